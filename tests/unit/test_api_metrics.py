"""The webhook backlog gauges: read at scrape, at most once per cache period; the live
gauges of ended processes left out of a multiprocess exposition."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy.exc import OperationalError

from api.plumbing.metrics import OutboxBacklog, OutboxCollector, forget_dead_processes


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_backlog_is_read_once_per_cache_period() -> None:
    reads: list[OutboxBacklog] = []

    def measure() -> OutboxBacklog:
        reads.append(OutboxBacklog(due=3, scheduled=2, oldest_due_s=42.5))
        return reads[-1]

    clock = Clock()
    registry = CollectorRegistry()
    registry.register(OutboxCollector(measure, cache_s=5, clock=clock))
    assert reads == []  # registering does not touch the database
    text = generate_latest(registry).decode()
    assert 'inferfleet_webhook_pending_attempts{state="due"} 3.0' in text
    assert 'inferfleet_webhook_pending_attempts{state="scheduled"} 2.0' in text
    assert "inferfleet_webhook_oldest_due_age_seconds 42.5" in text
    clock.now = 4.9
    generate_latest(registry)
    assert len(reads) == 1
    clock.now = 5.0
    generate_latest(registry)
    assert len(reads) == 2


def test_no_samples_while_postgres_does_not_answer() -> None:
    def measure() -> OutboxBacklog:
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    registry = CollectorRegistry()
    registry.register(OutboxCollector(measure))
    text = generate_latest(registry).decode()
    assert "# TYPE inferfleet_webhook_pending_attempts gauge" in text
    samples = [line for line in text.splitlines() if not line.startswith("#")]
    assert samples == []


def test_live_gauges_of_processes_that_ended_are_forgotten(tmp_path: Path) -> None:
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    gone = int(ended.stdout)
    files = [
        f"gauge_livemax_{gone}.db",
        f"gauge_liveall_{gone}.db",
        f"counter_{gone}.db",  # a counter of an ended process still counts in the sums
        f"gauge_livemax_{os.getpid()}.db",
        f"gauge_all_{gone}.db",  # not a live gauge: kept
    ]
    for name in files:
        (tmp_path / name).write_bytes(b"")
    forget_dead_processes(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(files[2:])
