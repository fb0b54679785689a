"""Per-key rate limits: a moving window per API key, counted in Redis.

Every `/v1` request counts against its key (by the key's id, never the key itself), after
auth and the body size check; a request past the limit answers 429 with `Retry-After`.

While Redis does not answer, each process counts in its own memory instead (the `limits`
library's `MemoryStorage`): the limit still holds per process, so a fleet of N API
processes admits at most N times the rate per key until Redis is back. The switch is
logged once per outage and shown by `inferfleet_api_rate_limit_fallback` (1 while
counting in memory) and `inferfleet_api_rate_limit_fallbacks_total`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.exceptions import RedisError

from api.plumbing.metrics import ApiMetrics
from inferfleet.errors import ConfigError

log = logging.getLogger(__name__)

# The first part of every counter's key, beside the API key's id.
NAMESPACE = "inferfleet-api"
# How long one Redis call may take before the request is counted in memory instead.
REDIS_TIMEOUT_S = 0.5
# After Redis fails, requests are counted in memory this long before Redis is asked again.
FALLBACK_S = 5.0


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
    """Counters in the Redis at `url` (`redis://…`), asked with redis-py's asyncio client;
    calls fail within REDIS_TIMEOUT_S."""
    return RedisStorage(
        f"async+{url}",
        wrap_exceptions=True,
        implementation="redispy",
        socket_connect_timeout=REDIS_TIMEOUT_S,
        socket_timeout=REDIS_TIMEOUT_S,
    )


class RateLimiter:
    """Counts each key's requests in a moving window of `rate`.

    Counters live in `storage` (Redis). When it fails, requests are counted in a
    per-process `MemoryStorage` for FALLBACK_S, then `storage` is asked again; a warning
    is logged when the fallback starts (once per outage) and an info line when Redis
    answers again. The in-memory counts start empty and are dropped when Redis is back.
    """

    def __init__(
        self,
        storage: RedisStorage | MemoryStorage,
        rate: RateLimitItem,
        clock: Callable[[], float] = time.monotonic,
        metrics: ApiMetrics | None = None,
    ) -> None:
        self.rate = rate
        self._shared = MovingWindowRateLimiter(storage)
        self._local: MovingWindowRateLimiter | None = None
        self._clock = clock
        self._metrics = metrics
        self._local_until = 0.0

    async def hit(self, key_id: str) -> int | None:
        """Count one request of `key_id`: None if within the rate, else seconds to wait."""
        now = self._clock()
        if self._local is not None and now < self._local_until:
            return await self._count(self._local, key_id)
        try:
            wait = await self._count(self._shared, key_id)
        except (StorageError, RedisError) as e:
            self._local_until = now + FALLBACK_S
            if self._local is None:
                self._start_fallback(e)
            assert self._local is not None
            return await self._count(self._local, key_id)
        if self._local is not None:
            self._local = None
            if self._metrics is not None:
                self._metrics.rate_limit_fallback.set(0)
            log.info("rate limits are counted in Redis again")
        return wait

    def _start_fallback(self, error: StorageError | RedisError) -> None:
        cause = error.storage_error if isinstance(error, StorageError) else error
        log.warning(
            "rate limits are counted in this process only: Redis failed (%s: %s); each "
            "process admits up to %s per key until Redis answers (asked again every %.0f s)",
            type(cause).__name__,
            cause,
            self.rate,
            FALLBACK_S,
        )
        self._local = MovingWindowRateLimiter(MemoryStorage())
        if self._metrics is not None:
            self._metrics.rate_limit_fallback.set(1)
            self._metrics.rate_limit_fallbacks.inc()

    async def _count(self, limiter: MovingWindowRateLimiter, key_id: str) -> int | None:
        if await limiter.hit(self.rate, NAMESPACE, key_id):
            return None
        stats = await limiter.get_window_stats(self.rate, NAMESPACE, key_id)
        return retry_after(stats.reset_time, time.time())
