"""The webhook retry rules, without a receiver."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from scheduler.retries import AttemptResult, backoff_s, next_step, retry_after_s

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
DAY = NOW + timedelta(hours=24)


def step(result: AttemptResult, attempt: int = 1, until: datetime = DAY, seed: int = 1):
    return next_step(result, attempt, NOW, until, 5.0, 3600.0, random.Random(seed))


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_any_2xx_is_delivered(status: int) -> None:
    assert step(AttemptResult(status)).action == "delivered"


def test_410_stops_at_once() -> None:
    assert step(AttemptResult(410, "gone")).action == "failed"


@pytest.mark.parametrize(
    "result",
    [
        AttemptResult(500, "the receiver answered 500"),
        AttemptResult(404, "the receiver answered 404"),
        AttemptResult(301, "the receiver answered 301 (redirects are not followed)"),
        AttemptResult(None, "no answer before the timeout"),
        AttemptResult(None, "ConnectError: refused"),
    ],
)
def test_other_answers_and_no_answer_are_retried(result: AttemptResult) -> None:
    nxt = step(result)
    assert nxt.action == "retry"
    assert nxt.due_at is not None
    assert NOW < nxt.due_at <= NOW + timedelta(seconds=5)


def test_backoff_doubles_with_jitter_inside_half_to_whole_step() -> None:
    rng = random.Random(3)
    for attempt, whole in [(1, 5.0), (2, 10.0), (3, 20.0), (6, 160.0), (20, 3600.0)]:
        waits = [backoff_s(attempt, 5.0, 3600.0, rng) for _ in range(200)]
        assert all(whole / 2 <= w <= whole for w in waits)
        assert max(waits) - min(waits) > whole / 4  # jitter spreads retries out


def test_retry_after_is_honoured_when_longer_than_the_backoff() -> None:
    nxt = step(AttemptResult(503, "busy", retry_after_s=120.0))
    assert nxt.due_at == NOW + timedelta(seconds=120)
    short = step(AttemptResult(503, "busy", retry_after_s=0.5), attempt=3)
    assert short.due_at is not None
    assert short.due_at >= NOW + timedelta(seconds=10)


def test_the_last_try_lands_at_the_end_of_the_window_then_it_fails() -> None:
    until = NOW + timedelta(seconds=30)
    nxt = step(AttemptResult(500, "x"), attempt=10, until=until)
    assert nxt == type(nxt)("retry", until)
    late = next_step(AttemptResult(500, "x"), 11, until, until, 5.0, 3600.0)
    assert late.action == "failed"


def test_retries_span_at_least_the_whole_window() -> None:
    """Attempts made at every due time keep going until 24 h have passed, then stop."""
    now, attempt, rng = NOW, 1, random.Random(5)
    while True:
        nxt = next_step(AttemptResult(500, "x"), attempt, now, DAY, 5.0, 3600.0, rng)
        if nxt.action == "failed":
            break
        assert nxt.due_at is not None
        now, attempt = nxt.due_at, attempt + 1
    assert now >= DAY
    assert 20 < attempt < 60


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("Wed, 25 Nov 2026 12:01:00 GMT", 60.0),
        ("Wed, 25 Nov 2026 11:00:00 GMT", 0.0),
        ("soon", None),
        ("", None),
        (None, None),
        ("-5", None),
    ],
)
def test_retry_after_header(header: str | None, seconds: float | None) -> None:
    assert retry_after_s(header, NOW) == seconds
