"""Admission control: no new jobs for a topic whose backlog is already too deep.

A submission is refused with 429 (and `Retry-After`) while the consumer lag of the topic
its jobs would go to passes `admission_max_lag` (0 turns the check off). The lag is that
of the workers' group, `worker_group`, as `inferfleet.clients.grouplag` counts it: summed
over the topic's partitions, the log-end offset minus the group's committed offset, or
minus the earliest offset where the group has committed nothing.

Where it runs: in `submit()`, once the request body is validated (422), an
`Idempotency-Key` repeat is answered and the version is resolved (404 for a model that
does not exist), before the inputs are checked against its schema and produced. Only
names the registry knows are measured, so made-up model names cost one database
look-up and never a Kafka request or a cache entry. API.md orders the rate limit (429)
before validation (422); admission is a 429 about load, like the rate limit. A refused
submission binds no `Idempotency-Key` and inserts nothing.

Kafka is asked at most once per topic every `admission_check_s`, in a worker thread:
`admit` answers from the cache on the event loop, and requests that miss it together
wait on one measurement. If Kafka cannot be asked, jobs are admitted (the produce
answers 503 if Kafka is really down), and that answer is cached like any other.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from kafka import TopicPartition
from kafka.errors import KafkaError

from api.plumbing.metrics import ApiMetrics
from api.plumbing.problems import ProblemError
from inferfleet.clients.grouplag import GroupClients, group_lag, read_offsets
from inferfleet.clients.topics import job_topic
from inferfleet.settings import Settings

log = logging.getLogger(__name__)

# How long one lag measurement may wait for Kafka.
KAFKA_TIMEOUT_MS = 2000


class KafkaBacklog:
    """Measures a topic's lag for one consumer group; its clients are made on first use."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._group = settings.worker_group
        self._clients = GroupClients(settings, "inferfleet-api-admission", KAFKA_TIMEOUT_MS)
        self._lock = threading.Lock()  # neither client may be used by two threads at once

    def __call__(self, topic: str) -> int:
        """The group's lag on `topic` (0 if the topic does not exist); KafkaError otherwise."""
        with self._lock:
            try:
                return self._measure(topic)
            except (KafkaError, OSError):
                self._clients.close()
                raise

    def _measure(self, topic: str) -> int:
        consumer, admin = self._clients.get()
        numbers = consumer.partitions_for_topic(topic)
        if not numbers:
            return 0
        partitions = [TopicPartition(topic, n) for n in sorted(numbers)]
        found = read_offsets(consumer, admin, self._group, partitions, KAFKA_TIMEOUT_MS)
        return group_lag(found.end, found.beginning, found.committed)

    def close(self) -> None:
        """Close the clients, if any were made."""
        with self._lock:
            self._clients.close()


@dataclass(frozen=True)
class _Measured:
    at: float
    lag: int | None  # None: Kafka could not be asked


class Admission:
    """Admits or refuses new jobs by their topic's lag, measured by `measure`."""

    def __init__(
        self,
        settings: Settings,
        measure: Callable[[str], int],
        metrics: ApiMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_lag = settings.admission_max_lag
        self._check_s = settings.admission_check_s
        self._retry_after_s = settings.retry_after_s
        self._measure = measure
        self._metrics = metrics
        self._clock = clock
        self._cache: dict[str, _Measured] = {}
        self._lock = threading.Lock()  # held only to read or write the cache
        self._measuring = threading.Lock()  # one measurement at a time
        self._asking: dict[str, asyncio.Future[int | None]] = {}

    def _fresh(self, topic: str) -> _Measured | None:
        with self._lock:
            cached = self._cache.get(topic)
        if cached is not None and self._clock() - cached.at < self._check_s:
            return cached
        return None

    def lag(self, topic: str) -> int | None:
        """`topic`'s lag as measured within the last `admission_check_s`; None if unknown.

        Blocks while Kafka is asked (at most once per topic per window)."""
        cached = self._fresh(topic)
        if cached is not None:
            return cached.lag
        with self._measuring:
            cached = self._fresh(topic)  # measured while this thread waited its turn
            if cached is not None:
                return cached.lag
            now = self._clock()
            try:
                lag: int | None = self._measure(topic)
            except (KafkaError, OSError) as e:
                log.warning(
                    "cannot measure the lag of %s (%s: %s); admitting its jobs unchecked",
                    topic,
                    type(e).__name__,
                    e,
                )
                lag = None
            with self._lock:
                # Only topics measured within the window are kept, so the cache stays small.
                self._cache = {t: m for t, m in self._cache.items() if now - m.at < self._check_s}
                self._cache[topic] = _Measured(now, lag)
            return lag

    async def _lag_soon(self, topic: str) -> int | None:
        """`lag` for the event loop: a cached answer at once; on a miss, Kafka is asked in
        a worker thread, once for every request waiting on that topic."""
        cached = self._fresh(topic)
        if cached is not None:
            return cached.lag
        asking = self._asking.get(topic)
        if asking is None:
            asking = asyncio.ensure_future(asyncio.to_thread(self.lag, topic))
            self._asking[topic] = asking
            asking.add_done_callback(lambda _: self._asking.pop(topic, None))
        return await asyncio.shield(asking)

    async def admit(self, model: str) -> None:
        """Return if `model` may take new jobs; ProblemError (429) while its backlog is too deep.

        `model` must be a name the registry resolved: each name costs a cache entry.
        """
        if self._max_lag == 0:
            return
        topic = job_topic(model, "interactive")
        lag = await self._lag_soon(topic)
        if lag is None or lag <= self._max_lag:
            return
        self._metrics.jobs_rejected.labels(reason="backlog").inc()
        raise ProblemError(
            429,
            "Too Many Requests",
            f"model {model!r} has {lag} jobs waiting on {topic}, more than the "
            f"{self._max_lag} this server admits; no job was queued, submit again later",
            headers={"Retry-After": str(self._retry_after_s)},
        )
