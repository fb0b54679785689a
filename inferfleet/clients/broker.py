"""Kafka clients configured the way this system needs them.

Producers wait for every in-sync replica (acks=all) and fail within the configured
produce timeout instead of kafka-python's two-minute default. Consumers commit by hand,
after results are in Postgres, and start from the earliest offset when their group is new.
"""

from __future__ import annotations

from collections.abc import Sequence

from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError

from inferfleet.clients.kafkaconn import kafka_connection
from inferfleet.clients.records import Record as Record  # where producers find it
from inferfleet.errors import QueueUnavailableError
from inferfleet.settings import Settings


def make_producer(settings: Settings, client_id: str, linger_ms: int = 2) -> KafkaProducer:
    """A producer with acks=all; raises NoBrokersAvailable when Kafka is down.

    `linger_ms` is how long a record waits for others to share its request; a caller
    that batches its records itself (the API's group commit) passes 0.

    It is not idempotent: kafka-python's idempotent producer turns the first record a
    broker refuses for good (one tenant's message too large for its topic) into a fatal
    state that fails every record in flight and every later send, everyone's. The fleet
    does not need it: delivery is at-least-once and every write a message leads to is
    status-guarded, so a record a retry sends twice changes nothing.
    """
    timeout_ms = int(settings.produce_timeout_s * 1000)
    return KafkaProducer(
        **kafka_connection(settings),
        client_id=client_id,
        acks="all",
        enable_idempotence=False,
        linger_ms=linger_ms,
        batch_size=256 * 1024,
        max_block_ms=timeout_ms,
        bootstrap_timeout_ms=timeout_ms,
        request_timeout_ms=max(1000, timeout_ms // 2),
        delivery_timeout_ms=timeout_ms + 10,
    )


def send_all(producer: KafkaProducer, records: Sequence[Record], timeout_s: float) -> None:
    """Send records and wait until Kafka has acknowledged all of them.

    Raises QueueUnavailableError if any record is not acknowledged in time; which of the
    others landed is then unknown, so callers treat the whole call as failed.
    """
    try:
        futures = [
            producer.send(r.topic, key=r.key, value=r.value, headers=list(r.headers) or None)
            for r in records
        ]
        producer.flush(timeout=timeout_s)
        for future in futures:
            future.get(timeout=timeout_s)
    except KafkaError as e:
        raise QueueUnavailableError(f"Kafka did not acknowledge the job messages: {e}") from e


def make_consumer(settings: Settings, topics: Sequence[str], client_id: str) -> KafkaConsumer:
    """A group consumer for `topics` that commits only when told to.

    Its fetches are kept short, since kafka-python has one in flight per broker and
    the worker's interactive records wait behind it (`worker.lanes`): a fetch is
    answered with at most 1 MiB (a few thousand jobs, decoded in milliseconds, not a
    fetch of tens of MiB that takes a fifth of a second), and a broker holds a fetch
    with nothing to return for at most 50 ms (so a fetch of the interactive lane alone
    never keeps the batch lane's next one waiting for long).
    """
    consumer = KafkaConsumer(
        **kafka_connection(settings),
        client_id=client_id,
        group_id=settings.worker_group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=settings.poll_max_records,
        max_poll_interval_ms=settings.max_poll_interval_ms,
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=max(500, settings.session_timeout_ms // 3),
        max_partition_fetch_bytes=1024 * 1024,
        fetch_max_bytes=1024 * 1024,
        fetch_max_wait_ms=50,
    )
    consumer.subscribe(list(topics))
    return consumer
