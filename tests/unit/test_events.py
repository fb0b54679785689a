"""The pure parts of the Server-Sent Events streams: frames, ids, progress and the
drain rate."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from api.plumbing.events import DrainRate, frame, last_event_id, progress


def test_a_frame_is_one_event_with_compact_json() -> None:
    made = frame("job.queued", 0, {"id": "job_1", "status": "queued"})
    text = made.decode()
    assert text.endswith("\n\n")
    lines = text.strip().split("\n")
    assert lines[:2] == ["event: job.queued", "id: 0"]
    assert json.loads(lines[2].removeprefix("data: ")) == {"id": "job_1", "status": "queued"}


@pytest.mark.parametrize(
    ("header", "expected"), [(None, None), ("", None), ("7", 7), (" 12 ", 12), ("abc", None)]
)
def test_only_an_id_of_ours_resumes(header: str | None, expected: int | None) -> None:
    assert last_event_id(header) == expected


def test_progress_grows_with_every_status_change_a_job_can_make() -> None:
    path = [
        ("queued", 0),
        ("running", 1),
        ("queued", 1),  # put back after a failed attempt
        ("running", 2),
        ("succeeded", 2),
    ]
    steps = [progress(status, attempts) for status, attempts in path]
    assert steps == sorted(set(steps))
    assert progress("cancelled", 0) > progress("queued", 0)  # cancelled before it ran
    assert progress("expired", 1) > progress("queued", 1)
    assert progress("failed", 3) > progress("running", 3)


def test_the_drain_rate_estimates_completion_from_what_ended_in_its_window() -> None:
    rate = DrainRate(window_s=60)
    now = datetime(2026, 12, 4, tzinfo=UTC)
    assert rate.completion(now, 100) is None  # nothing observed
    rate.observe(0.0, 0)
    rate.observe(10.0, 0)
    assert rate.per_second() is None  # nothing ended yet
    rate.observe(20.0, 200)
    assert rate.per_second() == pytest.approx(10.0)
    assert rate.completion(now, 100) == now + timedelta(seconds=10)
    assert rate.completion(now, 0) == now
    # Old observations leave the window: the rate is today's, not the batch's average.
    rate.observe(100.0, 1000)
    rate.observe(110.0, 1500)
    assert rate.per_second() == pytest.approx((1500 - 200) / (110 - 20))
    rate.observe(200.0, 1600)  # measured from the last observation a window ago
    assert rate.per_second() == pytest.approx((1600 - 1500) / (200 - 110))
