"""The API's side of Kafka: one producer, made on first use and remade after a failure.

Making it lazily lets the API start, and answer 503, while Kafka is down.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress

from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient
from kafka.errors import BrokerResponseError, KafkaError

from inferfleet.clients.broker import Record, make_producer
from inferfleet.clients.kafkaconn import explain, kafka_connection
from inferfleet.clients.topics import ensure_topics
from inferfleet.errors import QueueUnavailableError
from inferfleet.settings import Settings

log = logging.getLogger(__name__)

# Threads handing records to the producer; one group's sends take one of them.
SEND_THREADS = 2


class JobQueue:
    """Produces job messages and reports whether Kafka answers."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer: KafkaProducer | None = None
        self._admin: KafkaAdminClient | None = None
        self._known_topics: set[str] = set()
        self._lock = threading.Lock()
        # `send` blocks while a new topic's metadata or buffer space is awaited; these
        # threads do that waiting, and other work's threads never hold the sends up.
        self._senders = ThreadPoolExecutor(SEND_THREADS, thread_name_prefix="kafka-send")

    def _get_producer(self) -> KafkaProducer:
        with self._lock:
            if self._producer is None:
                try:
                    # A group's records are sent at once: waiting for more only adds latency.
                    self._producer = make_producer(
                        self._settings, client_id="inferfleet-api", linger_ms=0
                    )
                except KafkaError as e:
                    raise QueueUnavailableError(
                        f"cannot reach Kafka: {explain(e, self._settings)}"
                    ) from e
            return self._producer

    def _ensure(self, topics: set[str]) -> None:
        missing = topics - self._known_topics
        if not missing:
            return
        try:
            ensure_topics(
                self._settings,
                sorted(missing),
                self._settings.topic_partitions,
                self._settings.topic_replication,
                timeout_ms=int(self._settings.produce_timeout_s * 1000),
            )
        except KafkaError as e:
            raise QueueUnavailableError(
                f"cannot create topics {sorted(missing)}: {explain(e, self._settings)}"
            ) from e
        self._known_topics |= missing

    async def produce(self, records: Sequence[Record]) -> list[QueueUnavailableError | None]:
        """Produce every record; per record, None once Kafka acknowledged it (acks=all),
        or why not within `produce_timeout_s`.

        The sends run in one of the queue's threads (`send` may block on metadata or a
        full buffer); the acknowledgements come back to the event loop once, when the last
        arrives, so no thread waits for them. A record not acknowledged because the
        cluster did not answer has the producer made again for the next call.
        """
        timeout_s = self._settings.produce_timeout_s
        loop = asyncio.get_running_loop()
        acks = Acks(len(records), loop)
        try:
            producer = await loop.run_in_executor(self._senders, self._send, records, acks)
        except QueueUnavailableError as e:
            return [e] * len(records)
        with suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(acks.all_settled), timeout_s)
        late = QueueUnavailableError(f"Kafka did not acknowledge the job messages in {timeout_s} s")
        errors = acks.errors(late)
        if any(e is not None and (e is late or _cluster_away(e)) for e in errors):
            await asyncio.to_thread(self._reset, producer)
        return errors

    def _send(self, records: Sequence[Record], acks: Acks) -> KafkaProducer:
        """Hand every record to the producer, each settling `acks` when Kafka answers."""
        self._ensure({r.topic for r in records})
        producer = self._get_producer()
        for index, r in enumerate(records):
            try:
                future = producer.send(
                    r.topic, key=r.key, value=r.value, headers=list(r.headers) or None
                )
            except KafkaError as e:
                refused = _refused(e)
                if not _cluster_away(refused):  # this record alone (too large)
                    acks.settle(index, refused)
                    continue
                # No metadata or buffer space in time: the rest would wait as long.
                for rest in range(index, len(records)):
                    acks.settle(rest, refused)
                break
            future.add_callback(lambda _, i=index: acks.settle(i, None))
            future.add_errback(lambda e, i=index: acks.settle(i, _refused(e)))
        return producer

    def ready(self) -> str:
        """`ok` when the cluster answers a metadata request, else why not."""
        try:
            with self._lock:
                if self._admin is None:
                    self._admin = KafkaAdminClient(
                        **kafka_connection(self._settings),
                        client_id="inferfleet-api-health",
                        request_timeout_ms=2000,
                        bootstrap_timeout_ms=2000,
                    )
                brokers = self._admin.describe_cluster()["brokers"]
        except (KafkaError, OSError) as e:
            self._close_admin()
            return f"unavailable: {explain(e, self._settings)}"
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
        try:
            producer.close(timeout=1)
        except KafkaError as e:  # a producer that cannot flush while the cluster is away
            log.info("closing the producer after a failed produce: %s", e)

    def close(self) -> None:
        """Flush and close the producer, if one was made."""
        self._close_admin()
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            producer.close(timeout=5)
        self._senders.shutdown(wait=False)


def _refused(error: BaseException) -> QueueUnavailableError:
    err = QueueUnavailableError(f"Kafka did not acknowledge the job messages: {error}")
    err.__cause__ = error
    return err


def _cluster_away(error: QueueUnavailableError) -> bool:
    """Whether the failure was the cluster's or the producer's, not the record's own (a
    broker refusing that record for good, e.g. as too large)."""
    cause = error.__cause__
    return not (isinstance(cause, BrokerResponseError) and not cause.retriable)


class Acks:
    """The acknowledgements of one produce call: settled on Kafka's threads, handed to
    the event loop once, when the last arrives (`all_settled`)."""

    def __init__(self, count: int, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._errors: list[QueueUnavailableError | None] = [None] * count
        self._settled = [False] * count
        self._left = count
        self.all_settled: asyncio.Future[None] = loop.create_future()
        if count == 0:
            self.all_settled.set_result(None)

    def settle(self, index: int, error: QueueUnavailableError | None) -> None:
        """Record record `index`'s answer; safe from any thread, only its first counts."""
        with self._lock:
            if self._settled[index]:
                return
            self._settled[index] = True
            self._errors[index] = error
            self._left -= 1
            last = self._left == 0
        if last:
            self._loop.call_soon_threadsafe(self._done)

    def _done(self) -> None:
        if not self.all_settled.done():
            self.all_settled.set_result(None)

    def errors(self, unanswered: QueueUnavailableError) -> list[QueueUnavailableError | None]:
        """Each record's answer so far; `unanswered` for those Kafka has not answered."""
        with self._lock:
            return [
                error if settled else unanswered
                for error, settled in zip(self._errors, self._settled, strict=True)
            ]
