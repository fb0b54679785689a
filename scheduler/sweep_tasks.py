"""The sweeps as Celery beat tasks, and their counts as metrics.

Counts go to a Redis hash: the prefork pool runs tasks in child processes, whose own
metrics no server could read; the worker's main process serves them on `/metrics`
(`register`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

import redis
from celery import Celery
from celery.signals import worker_init
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from inferfleet.clients.broker import Record, make_producer, send_all
from inferfleet.clients.grouplag import passed_before
from inferfleet.clients.kafkaconn import kafka_connection
from inferfleet.clients.topics import ensure_topics, parse_job_topic
from inferfleet.errors import QueueUnavailableError
from inferfleet.settings import Settings
from scheduler.sweeps import (
    delete_old_results,
    expire_overdue,
    reproduce_stale,
    reproduce_unproduced,
)

log = logging.getLogger(__name__)

UNPRODUCED_TASK = "inferfleet.sweep_unproduced"
STALE_TASK = "inferfleet.sweep_stale"
EXPIRY_TASK = "inferfleet.sweep_expired"
RETENTION_TASK = "inferfleet.sweep_retention"

TOTALS_KEY = "inferfleet:sweeps:totals"
LAST_RUN_KEY = "inferfleet:sweeps:last_run"
# What the counter counts (`what` label) and the sweeps (`sweep` label): bounded sets.
COUNTED = (
    "jobs_reproduced",
    "stale_jobs_reproduced",
    "jobs_expired",
    "jobs_deleted",
    "batches_deleted",
    "idempotency_keys_deleted",
)
SWEEPS = ("unproduced", "stale", "expiry", "retention")
KAFKA_TIMEOUT_MS = 5000


class Producer:
    """The sweeps' Kafka producer, made on first use (after the pool forks) and made
    again after a failure; creates missing topics first, like the API does."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer: KafkaProducer | None = None
        self._topics: set[str] = set()
        self._lock = threading.Lock()

    def send(self, records: Sequence[Record]) -> None:
        """Produce `records` and wait for acks=all; QueueUnavailableError otherwise."""
        s = self._settings
        with self._lock:
            try:
                missing = sorted({r.topic for r in records} - self._topics)
                if missing:
                    ensure_topics(s, missing, s.topic_partitions, s.topic_replication)
                    self._topics.update(missing)
                if self._producer is None:
                    self._producer = make_producer(s, client_id="inferfleet-sweeps")
                send_all(self._producer, records, s.produce_timeout_s)
            except (KafkaError, QueueUnavailableError) as e:
                if self._producer is not None:
                    self._producer.close(timeout=1)
                    self._producer = None
                raise QueueUnavailableError(f"the sweep could not produce: {e}") from e


class GroupPositions:
    """Where the worker group stands on its job topics, for the stale sweep: its Kafka
    clients made on first use (after the pool forks) and made again after a failure."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._consumer: KafkaConsumer | None = None
        self._admin: KafkaAdminClient | None = None
        self._lock = threading.Lock()

    def passed(self) -> dict[str, float]:
        """`passed_before` of every job topic the group has committed offsets on;
        KafkaError if Kafka fails."""
        s = self._settings
        with self._lock:
            try:
                if self._consumer is None:
                    self._consumer = KafkaConsumer(
                        **kafka_connection(s),
                        client_id="inferfleet-sweeps",
                        group_id=None,
                        enable_auto_commit=False,
                        allow_auto_create_topics=False,
                        auto_offset_reset="earliest",
                        max_partition_fetch_bytes=64 * 1024,  # one record per partition
                        fetch_max_wait_ms=100,
                        request_timeout_ms=KAFKA_TIMEOUT_MS,
                        bootstrap_timeout_ms=KAFKA_TIMEOUT_MS,
                    )
                if self._admin is None:
                    self._admin = KafkaAdminClient(
                        **kafka_connection(s),
                        client_id="inferfleet-sweeps",
                        request_timeout_ms=KAFKA_TIMEOUT_MS,
                        bootstrap_timeout_ms=KAFKA_TIMEOUT_MS,
                    )
                group = s.worker_group
                committed = self._admin.list_group_offsets({group: None}).get(group, {})
                topics = sorted({tp.topic for tp in committed if parse_job_topic(tp.topic)})
                return passed_before(self._consumer, self._admin, group, topics, KAFKA_TIMEOUT_MS)
            except KafkaError:
                self.close()
                raise

    def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        admin, self._admin = self._admin, None
        if consumer is not None:
            consumer.close(autocommit=False)
        if admin is not None:
            admin.close()


class Counts:
    """Sweep counts kept in Redis, shared by every scheduler process (module docstring)."""

    def __init__(self, redis_url: str) -> None:
        self._url = redis_url
        self._redis: redis.Redis | None = None

    def client(self) -> redis.Redis:
        if self._redis is None:
            self._redis = redis.Redis.from_url(self._url, socket_timeout=2)
        return self._redis

    def add(self, sweep: str, counts: dict[str, int]) -> None:
        """Add one run's counts; a Redis that does not answer loses them, logged."""
        try:
            pipe = self.client().pipeline()
            for what, n in counts.items():
                pipe.hincrby(TOTALS_KEY, what, n)
            pipe.hset(LAST_RUN_KEY, sweep, str(time.time()))
            pipe.execute()
        except redis.RedisError as e:
            log.warning("could not record the counts of sweep %s %s: %s", sweep, counts, e)


class SweepCollector(Collector):
    """Reads the sweep counts from Redis at each scrape."""

    def __init__(self, counts: Counts) -> None:
        self._counts = counts

    def collect(self) -> Iterator[Metric]:
        try:
            client = self._counts.client()
            totals = _floats(client.hgetall(TOTALS_KEY))
            last = _floats(client.hgetall(LAST_RUN_KEY))
        except redis.RedisError as e:
            log.warning("cannot read the sweep counts from Redis: %s", e)
            return
        swept = CounterMetricFamily(
            "inferfleet_swept",
            "Rows the sweeps handled, over every scheduler process",
            None,
            ["what"],
        )
        for what in COUNTED:
            swept.add_metric([what], totals.get(what, 0.0))
        yield swept
        runs = GaugeMetricFamily(
            "inferfleet_sweep_last_run_timestamp_seconds",
            "When each sweep last finished a run (unix seconds)",
            labels=["sweep"],
        )
        for sweep in SWEEPS:
            if sweep in last:
                runs.add_metric([sweep], last[sweep])
        yield runs


def _floats(found: Any) -> dict[str, float]:
    """A Redis hash of numbers, as read by the synchronous client."""
    return {k.decode(): float(v) for k, v in cast(dict[bytes, bytes], found).items()}


def register(
    app: Celery,
    settings: Settings,
    engine: Callable[[], Engine],
    s3: Callable[[], Any],
) -> None:
    """Add the sweep tasks and their beat entries to `app`, and serve their counts on
    `/metrics` from the worker's main process when `scheduler_metrics_port` is set.

    `engine` and `s3` give the calling process's clients (made after the fork).
    """
    producer = Producer(settings)
    positions = GroupPositions(settings)
    counts = Counts(settings.redis_url)

    def run(sweep: str, work: Callable[[], dict[str, int]]) -> int:
        started = time.monotonic()
        done = work()
        counts.add(sweep, done)
        log.log(
            logging.INFO if any(done.values()) else logging.DEBUG,
            "sweep %s %s seconds=%.3f",
            sweep,
            " ".join(f"{k}={v}" for k, v in done.items()),
            time.monotonic() - started,
        )
        return sum(done.values())

    @app.task(name=UNPRODUCED_TASK)  # type: ignore[untyped-decorator]
    def sweep_unproduced() -> int:
        return run(
            "unproduced",
            lambda: {"jobs_reproduced": reproduce_unproduced(engine(), producer.send, settings)},
        )

    @app.task(name=STALE_TASK)  # type: ignore[untyped-decorator]
    def sweep_stale() -> int:
        return run(
            "stale",
            lambda: {
                "stale_jobs_reproduced": reproduce_stale(
                    engine(), producer.send, positions.passed, settings
                )
            },
        )

    @app.task(name=EXPIRY_TASK)  # type: ignore[untyped-decorator]
    def sweep_expired() -> int:
        return run("expiry", lambda: {"jobs_expired": expire_overdue(engine(), settings)})

    @app.task(name=RETENTION_TASK)  # type: ignore[untyped-decorator]
    def sweep_retention() -> int:
        return run("retention", lambda: delete_old_results(engine(), s3(), settings))

    def every(seconds: float) -> dict[str, Any]:
        # A run that beat starts while the last still works expires instead of queueing.
        return {"schedule": seconds, "options": {"expires": max(1.0, seconds)}}

    app.conf.beat_schedule = {
        **app.conf.beat_schedule,
        "sweep-unproduced": {"task": UNPRODUCED_TASK, **every(settings.sweep_interval_s)},
        "sweep-stale": {"task": STALE_TASK, **every(settings.sweep_interval_s)},
        "sweep-expired": {"task": EXPIRY_TASK, **every(settings.sweep_interval_s)},
        "sweep-retention": {
            "task": RETENTION_TASK,
            **every(settings.sweep_retention_interval_s),
        },
    }

    if settings.scheduler_metrics_port:

        def serve_metrics(**_: Any) -> None:
            registry = CollectorRegistry()
            registry.register(SweepCollector(counts))
            start_http_server(
                settings.scheduler_metrics_port, settings.scheduler_metrics_host, registry
            )
            log.info(
                "sweep metrics on http://%s:%d/metrics",
                settings.scheduler_metrics_host,
                settings.scheduler_metrics_port,
            )

        # The main process, before the pool forks: one server per worker, not per child.
        worker_init.connect(serve_metrics, weak=False, dispatch_uid="inferfleet-sweep-metrics")
