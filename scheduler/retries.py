"""What happens after a delivery attempt: delivered, tried again later, or given up.

Pure functions, so the rules are tested without a receiver: any 2xx is delivered; 410
stops; anything else (another status, a timeout, a refused connection) is tried again
with exponential backoff and jitter, never sooner than the receiver's `Retry-After`,
until the event's retry window ends, and then the event is failed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Literal


@dataclass(frozen=True)
class AttemptResult:
    """What one POST came back with: a status, or an error when there was no answer."""

    status: int | None
    error: str | None = None
    retry_after_s: float | None = None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True)
class NextStep:
    """`delivered`, `retry` at `due_at`, or `failed` (no more attempts)."""

    action: Literal["delivered", "retry", "failed"]
    due_at: datetime | None = None


def backoff_s(attempt: int, base_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based).

    Exponential (`base_s` * 2^(attempt-1), capped at `max_s`) with "equal jitter": half
    the step is fixed and half random, so retries spread out but never come back at once.
    """
    step = min(max_s, base_s * 2.0 ** max(0, attempt - 1))
    source = rng if rng is not None else random.Random()
    return step / 2 + source.uniform(0, step / 2)


def retry_after_s(value: str | None, now: datetime) -> float | None:
    """A `Retry-After` header in seconds (it holds seconds or an HTTP date), or None."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        at = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if at.tzinfo is None:
        return None
    return max(0.0, (at - now).total_seconds())


def next_step(
    result: AttemptResult,
    attempt: int,
    now: datetime,
    retry_until: datetime,
    base_s: float,
    max_s: float,
    rng: random.Random | None = None,
) -> NextStep:
    """What follows attempt number `attempt` of an event that may be retried until
    `retry_until`. The last try lands at `retry_until` itself, so the window is used
    whole."""
    if result.delivered:
        return NextStep("delivered")
    if result.status == 410 or now >= retry_until:
        return NextStep("failed")
    wait = backoff_s(attempt, base_s, max_s, rng)
    if result.retry_after_s is not None:
        wait = max(wait, result.retry_after_s)
    return NextStep("retry", min(now + timedelta(seconds=wait), retry_until))
