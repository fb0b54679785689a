"""A consumer group's lag: the records on a topic that the group has not committed yet.

One rule for the API's admission check and the worker's queue probe. Per partition, the
group resumes at its committed offset, or at the earliest offset where it has none (the
workers' consumers start there) or where retention already deleted the committed one;
the lag is the log-end offset minus where it resumes, summed over the partitions.

The autoscaler keeps its own arithmetic (`autoscaler/lag.py`) on purpose: it follows
KEDA's kafka scaler, which counts a deleted committed offset in full and reads the log
start in one case only, so that the local autoscaler scales as KEDA would.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient

from inferfleet.clients.kafkaconn import kafka_connection
from inferfleet.settings import Settings

P = TypeVar("P")


class GroupClients:
    """A consumer in no group (it commits nothing and reads at most one record per
    partition, from the oldest kept where it has no position) and an admin client: what
    reading a group's positions takes. Made on first use, made again after `close`
    (the owner closes them after a KafkaError, so a failure never leaves a broken pair)."""

    def __init__(self, settings: Settings, client_id: str, timeout_ms: int) -> None:
        self._settings = settings
        self._client_id = client_id
        self._timeout_ms = timeout_ms
        self._pair: tuple[KafkaConsumer, KafkaAdminClient] | None = None

    def get(self) -> tuple[KafkaConsumer, KafkaAdminClient]:
        """The pair; KafkaError when the cluster does not answer."""
        if self._pair is None:
            connection = kafka_connection(self._settings)
            timeouts = {
                "request_timeout_ms": self._timeout_ms,
                "bootstrap_timeout_ms": self._timeout_ms,
            }
            consumer = KafkaConsumer(
                **connection,
                client_id=self._client_id,
                group_id=None,
                enable_auto_commit=False,
                allow_auto_create_topics=False,
                # A committed offset that retention deleted reads from the oldest record left.
                auto_offset_reset="earliest",
                max_partition_fetch_bytes=64 * 1024,
                fetch_max_wait_ms=100,
                **timeouts,
            )
            try:
                admin = KafkaAdminClient(**connection, client_id=self._client_id, **timeouts)
            except BaseException:
                consumer.close(autocommit=False)
                raise
            self._pair = (consumer, admin)
        return self._pair

    def close(self) -> None:
        pair, self._pair = self._pair, None
        if pair is not None:
            pair[0].close(autocommit=False)
            pair[1].close()


def resume_offsets(
    end: Mapping[P, int], beginning: Mapping[P, int], committed: Mapping[P, int]
) -> dict[P, int]:
    """Per partition, the offset the group consumes next.

    Its committed offset, or the earliest one where it has none (the worker's consumers
    start there) or where retention already deleted the committed one.
    """
    resume = {}
    for partition, end_offset in end.items():
        earliest = beginning.get(partition, 0)
        resume[partition] = min(max(committed.get(partition, earliest), earliest), end_offset)
    return resume


def lag(end: Mapping[P, int], resume: Mapping[P, int]) -> int:
    """Records waiting for the group: per partition, the end offset minus where it resumes."""
    return sum(max(0, end_offset - resume.get(p, 0)) for p, end_offset in end.items())


def group_lag(end: Mapping[P, int], beginning: Mapping[P, int], committed: Mapping[P, int]) -> int:
    """Records waiting for the group, from the offsets Kafka reports (`read_offsets`)."""
    return lag(end, resume_offsets(end, beginning, committed))


@dataclass(frozen=True)
class GroupOffsets:
    """Per partition: the log-end and log-start offsets, and the group's committed offset
    where it has one."""

    end: dict[TopicPartition, int]
    beginning: dict[TopicPartition, int]
    committed: dict[TopicPartition, int]


def read_offsets(
    consumer: KafkaConsumer,
    admin: KafkaAdminClient,
    group: str,
    partitions: Sequence[TopicPartition],
    timeout_ms: int,
) -> GroupOffsets:
    """The offsets of `partitions` and `group`'s commits on them; KafkaError if Kafka fails."""
    end = consumer.end_offsets(list(partitions), timeout_ms)
    beginning = consumer.beginning_offsets(list(partitions), timeout_ms)
    offsets = admin.list_group_offsets({group: list(partitions)})[group]
    committed = {p: o.offset for p, o in offsets.items() if o.offset >= 0}
    return GroupOffsets(end=end, beginning=beginning, committed=committed)


def timestamps_at(
    consumer: KafkaConsumer, offsets: Mapping[TopicPartition, int], timeout_s: float
) -> dict[TopicPartition, int]:
    """The timestamp (ms) of the record at each partition's offset, read with `consumer`
    (one of no group: it is assigned the partitions, then unassigned). A partition whose
    record did not arrive within `timeout_s`, or carries no timestamp, is left out."""
    if not offsets:
        return {}
    consumer.assign(list(offsets))
    for partition, offset in offsets.items():
        consumer.seek(partition, offset)
    found: dict[TopicPartition, int] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while len(found) < len(offsets) and time.monotonic() < deadline:
            polled: dict[Any, list[Any]] = consumer.poll(timeout_ms=200)
            for partition, records in polled.items():
                if partition not in found and records and records[0].timestamp >= 0:
                    found[partition] = records[0].timestamp
                    consumer.pause(partition)
    finally:
        consumer.unsubscribe()
    return found


def passed_before(
    consumer: KafkaConsumer,
    admin: KafkaAdminClient,
    group: str,
    topics: Sequence[str],
    timeout_ms: int,
) -> dict[str, float]:
    """Per topic, a time (unix seconds) such that every record stamped before it lies
    below where `group` resumes, on every partition: the timestamp of the record the
    group reads next on its laggiest partition, or the time the log ends were read where
    the group has read everything. A topic with a record whose timestamp cannot be read
    is left out. KafkaError if Kafka fails.

    Record timestamps are their producers' clocks: callers allow for skew between hosts.
    """
    partitions = [
        TopicPartition(topic, n)
        for topic in topics
        for n in sorted(consumer.partitions_for_topic(topic) or ())
    ]
    if not partitions:
        return {}
    read_at = time.time()  # every record acknowledged before this is below the log end
    found = read_offsets(consumer, admin, group, partitions, timeout_ms)
    resume = resume_offsets(found.end, found.beginning, found.committed)
    waiting = {p: r for p, r in resume.items() if r < found.end[p]}
    stamps = timestamps_at(consumer, waiting, timeout_ms / 1000)
    passed: dict[str, float] = {}
    for topic in topics:
        mine = [p for p in partitions if p.topic == topic]
        if not mine or any(p in waiting and p not in stamps for p in mine):
            continue
        passed[topic] = min([stamps[p] / 1000 for p in mine if p in waiting] + [read_at])
    return passed
