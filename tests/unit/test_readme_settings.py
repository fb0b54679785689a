"""The README's settings table names every setting the services read."""

from __future__ import annotations

import re
from pathlib import Path

from inferfleet.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def documented() -> set[str]:
    """Names in the settings table: `INFERFLEET_X`, and `_Y` for a row's siblings."""
    names: set[str] = set()
    for line in README.read_text().splitlines():
        if not line.startswith("| `INFERFLEET_"):
            continue
        first_cell = line.split("|")[1]
        names.update(n.lower() for n in re.findall(r"`INFERFLEET_([A-Z0-9_]+)`", first_cell))
        names.update(n.lower() for n in re.findall(r"`_([A-Z0-9_]+)`", first_cell))
    return names


def test_every_setting_is_in_the_readme_table() -> None:
    missing = sorted(set(Settings.model_fields) - documented())
    assert not missing, f"add these to README.md's settings table: {missing}"


def test_the_table_names_no_setting_that_does_not_exist() -> None:
    unknown = sorted(documented() - set(Settings.model_fields))
    assert not unknown, f"README.md documents settings that do not exist: {unknown}"
