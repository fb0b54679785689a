"""A webhook receiver down for longer than several retries, then back."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text

from tests.faults.fleet import Fleet, Window, run_fault

# A fault run takes minutes: its fleet starts, 20,000 jobs run, the audit waits for them.
pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]

# The fleet retries after about 1, 2, 4, 4, … s (INFERFLEET_WEBHOOK_BACKOFF_*), behind
# the attempts due before: several attempts of the first events refused fall in it.
DOWN_S = 30.0


def test_a_webhook_receiver_down_for_several_retries(fleet: Fleet) -> None:
    def receiver_down(fleet: Fleet) -> Window:
        fleet.receiver.stop()
        began = time.monotonic()
        time.sleep(DOWN_S)
        fleet.receiver.start()
        return Window(began, time.monotonic(), f"receiver refused connections for {DOWN_S:.0f} s")

    report = run_fault(fleet, "webhook receiver down", receiver_down)
    with fleet.engine.connect() as conn:
        refused = conn.execute(
            text(
                "SELECT coalesce(max(n), 0) FROM ("
                " SELECT count(*) AS n FROM webhook_attempts AS a"
                " JOIN webhook_events AS e ON e.id = a.event_id"
                " JOIN jobs AS j ON j.id = e.job_id"
                " WHERE j.model = :m AND a.state = 'failed' GROUP BY a.event_id) AS per_event"
            ),
            {"m": fleet.model},
        ).scalar_one()
    report["most_refused_attempts_of_one_event"] = refused  # into the session's report
    assert refused >= 3, f"no event was refused several times (at most {refused})"
