"""The API's side of Kafka: one producer, made on first use and remade after a failure.

Making it lazily lets the API start, and answer 503, while Kafka is down.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError

from inferfleet.clients.broker import Record, make_producer, send_all
from inferfleet.clients.topics import ensure_topics
from inferfleet.errors import QueueUnavailableError
from inferfleet.settings import Settings

log = logging.getLogger(__name__)


class JobQueue:
    """Produces job messages and reports whether Kafka answers."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer: KafkaProducer | None = None
        self._admin: KafkaAdminClient | None = None
        self._known_topics: set[str] = set()
        self._lock = threading.Lock()

    def _get_producer(self) -> KafkaProducer:
        with self._lock:
            if self._producer is None:
                try:
                    self._producer = make_producer(self._settings, client_id="inferfleet-api")
                except KafkaError as e:
                    raise QueueUnavailableError(f"cannot reach Kafka: {e}") from e
            return self._producer

    def _ensure(self, topics: set[str]) -> None:
        missing = topics - self._known_topics
        if not missing:
            return
        try:
            ensure_topics(
                self._settings.kafka_bootstrap,
                sorted(missing),
                self._settings.topic_partitions,
                self._settings.topic_replication,
                timeout_ms=int(self._settings.produce_timeout_s * 1000),
            )
        except KafkaError as e:
            raise QueueUnavailableError(f"cannot create topics {sorted(missing)}: {e}") from e
        self._known_topics |= missing

    def send(self, records: Sequence[Record]) -> None:
        """Produce every record and wait for acks=all; QueueUnavailableError otherwise."""
        self._ensure({r.topic for r in records})
        producer = self._get_producer()
        try:
            send_all(producer, records, self._settings.produce_timeout_s)
        except QueueUnavailableError:
            self._reset(producer)
            raise

    def ready(self) -> str:
        """`ok` when the cluster answers a metadata request, else why not."""
        try:
            with self._lock:
                if self._admin is None:
                    self._admin = KafkaAdminClient(
                        bootstrap_servers=self._settings.kafka_bootstrap,
                        client_id="inferfleet-api-health",
                        request_timeout_ms=2000,
                        bootstrap_timeout_ms=2000,
                    )
                brokers = self._admin.describe_cluster()["brokers"]
        except (KafkaError, OSError) as e:
            self._close_admin()
            return f"unavailable: {type(e).__name__}: {e}"
        return "ok" if brokers else "unavailable: no brokers in cluster metadata"

    def _close_admin(self) -> None:
        with self._lock:
            admin, self._admin = self._admin, None
        if admin is not None:
            admin.close()

    def _reset(self, producer: KafkaProducer) -> None:
        with self._lock:
            if self._producer is producer:
                self._producer = None
        producer.close(timeout=1)

    def close(self) -> None:
        """Flush and close the producer, if one was made."""
        self._close_admin()
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            producer.close(timeout=5)
