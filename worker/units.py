"""Units of work the worker's pipeline hands from its consumer side to its execution
side (`worker.pipeline`), and the pure decision of where a new unit joins the
hand-off queue.

A unit is one poll's records, decoded on the consumer side, with the offsets that
committing it moves each partition to. Units that share a partition run in the order
they were polled, so committing each finished unit's offsets never passes a record
whose result is not written.
"""

from __future__ import annotations

from collections.abc import Sequence, Set
from dataclasses import dataclass, field
from typing import Any

from inferfleet.clients.topics import lane_of
from inferfleet.jobs.messages import JobMessage
from worker.batching import Poison, decode_records

# A partition: (topic, partition number).
Partition = tuple[str, int]


@dataclass(frozen=True)
class Unit:
    """One poll's records, decoded; what the execution side runs as one batch."""

    records: list[Any]
    jobs: list[JobMessage]
    poison: list[Poison]
    # Where committing the unit moves each of its partitions: one past its last record.
    offsets: dict[Partition, int] = field(default_factory=dict)

    @property
    def partitions(self) -> Set[Partition]:
        return self.offsets.keys()

    @property
    def interactive(self) -> bool:
        """Whether any record came from an interactive topic."""
        return any(lane_of(topic) == "interactive" for topic, _ in self.offsets)


def make_unit(records: Sequence[Any]) -> Unit:
    """Decode polled records into a unit (duplicates of a job ID kept once)."""
    jobs, poison = decode_records(records)
    offsets: dict[Partition, int] = {}
    for r in records:
        key = (r.topic, r.partition)
        offsets[key] = max(offsets.get(key, 0), r.offset + 1)
    return Unit(list(records), jobs, poison, offsets)


def queue_position(queued: Sequence[Set[Partition]], unit: Set[Partition], front: bool) -> int:
    """Where a new unit joins the hand-off queue (`queued`: each waiting unit's partitions).

    A unit goes last unless it is to go `front` (it carries interactive records); then
    it overtakes every waiting unit it shares no partition with, and stays behind the
    last one it does share one with, so each partition's records still run in order.
    """
    if not front:
        return len(queued)
    for i in range(len(queued) - 1, -1, -1):
        if queued[i] & unit:
            return i + 1
    return 0


def hand_off_parts(records: Sequence[Any], queue_empty: bool) -> list[list[Any]]:
    """The units one poll's records become: one, unless units wait in the queue and the
    poll holds both lanes; then the interactive records go as a unit of their own, so
    they overtake the waiting batch units that the batch records must stay behind."""
    interactive = [r for r in records if lane_of(r.topic) == "interactive"]
    if queue_empty or not interactive or len(interactive) == len(records):
        return [list(records)] if records else []
    return [interactive, [r for r in records if lane_of(r.topic) != "interactive"]]
