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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient

P = TypeVar("P")


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
