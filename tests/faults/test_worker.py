"""A zombie worker: stopped with SIGSTOP while it holds claimed jobs, for longer than its
session timeout (the group gives its partitions to the other worker, which runs those
jobs again), then continued, to finish and write what it held."""

from __future__ import annotations

import signal
import time
from datetime import datetime

import pytest
from sqlalchemy import text

from tests.faults.fleet import SESSION_TIMEOUT_MS, Fleet, Window, run_fault

# A fault run takes minutes: its fleet starts, 20,000 jobs run, the audit waits for them.
pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]

STOPPED_S = 2.5 * SESSION_TIMEOUT_MS / 1000
# A batch of the other worker started before the stop has ended after this.
SETTLE_S = 1.5
TRIES = 60

HELD = text(
    "SELECT count(*) FROM jobs WHERE model = :m AND status = 'running' AND started_at <= :at"
)
RUNNING = text("SELECT count(*) FROM jobs WHERE model = :m AND status = 'running'")


def test_a_zombie_worker_stopped_past_its_session_timeout_then_continued(fleet: Fleet) -> None:
    zombie = fleet.workers[0]

    def stop_while_holding(fleet: Fleet) -> Window:
        held, tries = 0, 0
        while not held and tries < TRIES:
            tries += 1
            running_now(fleet)
            zombie.send(signal.SIGSTOP)
            began = time.monotonic()
            with fleet.engine.connect() as conn:
                at: datetime = conn.execute(text("SELECT now()")).scalar_one()
            time.sleep(SETTLE_S)
            with fleet.engine.connect() as conn:
                held = conn.execute(HELD, {"m": fleet.model, "at": at}).scalar_one()
            if not held:
                zombie.send(signal.SIGCONT)
        time.sleep(max(0.0, STOPPED_S - (time.monotonic() - began)))
        zombie.send(signal.SIGCONT)
        note = (
            f"{zombie.name} SIGSTOPped for {STOPPED_S:.0f} s "
            f"(session timeout {SESSION_TIMEOUT_MS / 1000:.0f} s) holding {held} running "
            f"jobs (caught on try {tries})"
        )
        return Window(began, time.monotonic(), note)

    report = run_fault(fleet, "zombie worker", stop_while_holding)
    assert "holding 0 " not in report["what"], "the worker was never stopped holding a job"


def running_now(fleet: Fleet, timeout: float = 5.0) -> None:
    """Returns as soon as some job of the model runs (or after `timeout`)."""
    deadline = time.monotonic() + timeout
    with fleet.engine.connect() as conn:
        while time.monotonic() < deadline:
            if conn.execute(RUNNING, {"m": fleet.model}).scalar_one():
                return
            conn.rollback()
            time.sleep(0.01)
