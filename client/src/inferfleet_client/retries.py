"""When to send a request again: pure decisions over a policy, tested with tables.

The server answers 429 (rate limit) and 503 (queue or database away) before it has done
anything, with `Retry-After`; both are sent again after that many seconds. A request
that never got an answer (connection refused or cut) is sent again only when repeating
it cannot do anything twice: reads, and submits that carry an `Idempotency-Key`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

RETRIED_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class RetryPolicy:
    """How long the client keeps trying one logical request.

    `max_retries` bounds the attempts after the first; `max_wait_s` bounds the time spent
    waiting between them (a `Retry-After` that would pass it ends the retries at once).
    Without `Retry-After`, waits grow from `backoff_s` doubling up to `max_backoff_s`.
    """

    max_retries: int = 5
    max_wait_s: float = 60.0
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0


NO_RETRIES = RetryPolicy(max_retries=0)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a `Retry-After` header asks for (delay-seconds or an HTTP date), or None
    when absent or unreadable. A date in the past is 0."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
    return max(0.0, seconds) if seconds == seconds else None  # NaN is unreadable


def backoff(policy: RetryPolicy, retry: int) -> float:
    """The wait before retry number `retry` (0 for the first) when the server named none."""
    return float(min(policy.max_backoff_s, policy.backoff_s * 2**retry))


def retry_delay(
    policy: RetryPolicy, retry: int, waited_s: float, retry_after_s: float | None
) -> float | None:
    """Seconds to wait before retry number `retry`, or None when the policy is spent.

    `waited_s` is the time already spent waiting for this logical request.
    """
    if retry >= policy.max_retries:
        return None
    delay = backoff(policy, retry) if retry_after_s is None else retry_after_s
    if waited_s + delay > policy.max_wait_s:
        return None
    return delay
