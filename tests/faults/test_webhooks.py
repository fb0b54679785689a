"""A webhook receiver down for longer than several retries, then back."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text

from tests.faults.fleet import Fleet, Window, run_fault
from tests.faults.load import Plan

# A fault run takes minutes: its fleet starts, 20,000 jobs run, the audit waits for them.
pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]

# The fleet retries after 1, 2, 4, 4, … s (INFERFLEET_WEBHOOK_BACKOFF_*): five or more
# attempts of an event fall in the outage.
DOWN_S = 20.0


def test_a_webhook_receiver_down_for_several_retries(fleet: Fleet) -> None:
    def receiver_down(fleet: Fleet) -> Window:
        fleet.receiver.stop()
        began = time.monotonic()
        time.sleep(DOWN_S)
        fleet.receiver.start()
        return Window(began, time.monotonic(), f"receiver refused connections for {DOWN_S:.0f} s")

    report = run_fault(fleet, "webhook receiver down", receiver_down, Plan(webhook_every=5))
    assert report["webhook_jobs"] >= 4000
    with fleet.engine.connect() as conn:
        refused = conn.execute(
            text(
                "SELECT count(*) FROM webhook_attempts AS a "
                "JOIN webhook_events AS e ON e.id = a.event_id "
                "JOIN jobs AS j ON j.id = e.job_id "
                "WHERE j.model = :m AND a.state = 'failed'"
            ),
            {"m": fleet.model},
        ).scalar_one()
    assert refused > 0, "no delivery attempt fell in the outage"
