"""The folder of the processes' metric files: emptied of an earlier run's files only."""

from __future__ import annotations

from pathlib import Path

from api.serving import metrics_folder


def test_a_configured_folder_loses_only_metric_files(tmp_path: Path) -> None:
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_123.db").write_bytes(b"")
    (folder / "gauge_livemax_123.db").write_bytes(b"")
    (folder / "notes.txt").write_text("not ours")
    with metrics_folder(folder) as used:
        assert used == folder
        assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    assert folder.is_dir()


def test_a_missing_configured_folder_is_made(tmp_path: Path) -> None:
    with metrics_folder(tmp_path / "a" / "b") as used:
        assert used.is_dir()


def test_without_a_folder_a_temporary_one_is_made_and_removed() -> None:
    with metrics_folder(None) as used:
        assert used.is_dir()
        (used / "counter_1.db").write_bytes(b"")
    assert not used.exists()
