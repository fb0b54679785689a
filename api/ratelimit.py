"""Per-key rate limits: a moving window per API key, counted in Redis.

Every `/v1` request counts against its key (by the key's id, never the key itself), after
auth and the body size check; a request past the limit answers 429 with `Retry-After`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from limits import RateLimitItem, parse_many
from limits.errors import StorageError
from limits.storage import MemoryStorage, RedisStorage
from limits.strategies import MovingWindowRateLimiter
from redis.exceptions import RedisError

from inferfleet.errors import ConfigError

log = logging.getLogger(__name__)

# The first part of every counter's key, beside the API key's id.
NAMESPACE = "inferfleet-api"
# How long one Redis call may take before the request goes on unchecked.
REDIS_TIMEOUT_S = 0.5
# After Redis fails, requests pass unchecked this long before Redis is asked again.
UNCHECKED_S = 5.0


def parse_rate(text: str) -> RateLimitItem:
    """One limit in the `limits` library's notation (`200/second`); ConfigError otherwise."""
    try:
        items = list(parse_many(text))
    except ValueError as e:
        raise ConfigError(
            f"INFERFLEET_RATE_LIMIT has value {text!r}: not a rate like '200/second'"
        ) from e
    if len(items) != 1:
        raise ConfigError(
            f"INFERFLEET_RATE_LIMIT has value {text!r}: give exactly one rate, like '200/second'"
        )
    return items[0]


def retry_after(reset_at: float, now: float) -> int:
    """Whole seconds from `now` until `reset_at`, rounded up and never less than 1."""
    return max(1, math.ceil(reset_at - now))


def redis_storage(url: str) -> RedisStorage:
    """Counters in the Redis at `url`; calls fail within REDIS_TIMEOUT_S."""
    return RedisStorage(
        url,
        wrap_exceptions=True,
        socket_connect_timeout=REDIS_TIMEOUT_S,
        socket_timeout=REDIS_TIMEOUT_S,
    )


class RateLimiter:
    """Counts each key's requests in a moving window of `rate`.

    Redis being down never fails a request: while it does not answer, requests pass
    unchecked. A warning is logged when checks stop, Redis is asked again UNCHECKED_S
    later, and an info line is logged once checks resume.
    """

    def __init__(
        self,
        storage: RedisStorage | MemoryStorage,
        rate: RateLimitItem,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self._limiter = MovingWindowRateLimiter(storage)
        self._clock = clock
        self._unchecked_until: float | None = None

    def hit(self, key_id: str) -> int | None:
        """Count one request of `key_id`: None if within the rate, else seconds to wait."""
        now = self._clock()
        if self._unchecked_until is not None and now < self._unchecked_until:
            return None
        try:
            if self._limiter.hit(self.rate, NAMESPACE, key_id):
                wait = None
            else:
                stats = self._limiter.get_window_stats(self.rate, NAMESPACE, key_id)
                wait = retry_after(stats.reset_time, time.time())
        except (StorageError, RedisError) as e:
            cause = e.storage_error if isinstance(e, StorageError) else e
            log.warning(
                "rate limits are not checked: Redis failed (%s: %s); requests pass "
                "unchecked, and Redis is asked again in %.0f s",
                type(cause).__name__,
                cause,
                UNCHECKED_S,
            )
            self._unchecked_until = now + UNCHECKED_S
            return None
        if self._unchecked_until is not None:
            self._unchecked_until = None
            log.info("rate limits are checked again: Redis answers")
        return wait
