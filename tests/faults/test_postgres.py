"""Postgres restarted under load: an immediate shutdown (a crash, no checkpoint) and a
start after a while."""

from __future__ import annotations

import time

import pytest

from tests.faults.fleet import Fleet, Window, run_fault

# A fault run takes minutes: its fleet starts, 20,000 jobs run, the audit waits for them.
pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]

DOWN_S = 15.0


def test_postgres_restarted(fleet: Fleet) -> None:
    def restart(fleet: Fleet) -> Window:
        fleet.stack.stack("pgtemp", "stop")
        began = time.monotonic()
        time.sleep(DOWN_S)
        fleet.stack.stack("pgtemp", "start")
        return Window(began, time.monotonic(), f"immediate shutdown, started {DOWN_S:.0f} s later")

    run_fault(fleet, "Postgres restart", restart)
