"""The sweeps as Celery beat tasks; each run's counts go to `scheduler.metrics.Counts`."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from celery import Celery
from kafka import KafkaProducer
from kafka.errors import KafkaError
from sqlalchemy import Engine

from inferfleet.clients.broker import Record, make_producer, send_all
from inferfleet.clients.grouplag import GroupClients, passed_before
from inferfleet.clients.topics import ensure_topics, parse_job_topic
from inferfleet.errors import QueueUnavailableError
from inferfleet.settings import Settings
from scheduler.metrics import DEFAULT_ROWS, HELD, HELD_AGE, Counts
from scheduler.partitions import create_ahead, default_rows, drop_expired
from scheduler.sweeps import (
    delete_old_keys,
    expire_overdue,
    reproduce_stale,
    reproduce_unproduced,
)

log = logging.getLogger(__name__)

UNPRODUCED_TASK = "inferfleet.sweep_unproduced"
STALE_TASK = "inferfleet.sweep_stale"
EXPIRY_TASK = "inferfleet.sweep_expired"
RETENTION_TASK = "inferfleet.sweep_retention"
PARTITIONS_TASK = "inferfleet.create_partitions"

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
        self._clients = GroupClients(settings, "inferfleet-sweeps", KAFKA_TIMEOUT_MS)
        self._lock = threading.Lock()

    def passed(self) -> dict[str, float]:
        """`passed_before` of every job topic the group has committed offsets on;
        KafkaError if Kafka fails."""
        s = self._settings
        with self._lock:
            try:
                consumer, admin = self._clients.get()
                group = s.worker_group
                committed = admin.list_group_offsets({group: None}).get(group, {})
                topics = sorted({tp.topic for tp in committed if parse_job_topic(tp.topic)})
                return passed_before(consumer, admin, group, topics, KAFKA_TIMEOUT_MS)
            except KafkaError:
                self.close()
                raise

    def close(self) -> None:
        self._clients.close()


def register(
    app: Celery,
    settings: Settings,
    counts: Counts,
    engine: Callable[[], Engine],
    s3: Callable[[], Any],
) -> None:
    """Add the sweep tasks and their beat entries to `app`; each run adds its counts to
    `counts`. `engine` and `s3` give the calling process's clients (made after the fork).
    """
    producer = Producer(settings)
    positions = GroupPositions(settings)

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
                "jobs_reproduced_stale": reproduce_stale(
                    engine(), producer.send, positions.passed, settings
                )
            },
        )

    @app.task(name=EXPIRY_TASK)  # type: ignore[untyped-decorator]
    def sweep_expired() -> int:
        return run("expiry", lambda: {"jobs_expired": expire_overdue(engine(), settings)})

    def retention() -> dict[str, int]:
        dropped = drop_expired(engine(), s3(), settings)
        rows = default_rows(engine())
        counts.set(
            {
                HELD: dropped.held,
                HELD_AGE: dropped.oldest_held_age_s,
                **{DEFAULT_ROWS + table: n for table, n in rows.items()},
            }
        )
        return {
            "partitions_dropped": dropped.partitions_dropped,
            "batches_deleted": dropped.batches_deleted,
            "idempotency_keys_deleted": delete_old_keys(engine(), settings),
        }

    @app.task(name=RETENTION_TASK)  # type: ignore[untyped-decorator]
    def sweep_retention() -> int:
        return run("retention", retention)

    @app.task(name=PARTITIONS_TASK)  # type: ignore[untyped-decorator]
    def create_partitions() -> int:
        return run("partitions", lambda: {"partitions_created": create_ahead(engine(), settings)})

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
        "create-partitions": {
            "task": PARTITIONS_TASK,
            **every(settings.sweep_retention_interval_s),
        },
    }
