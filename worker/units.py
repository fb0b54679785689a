"""Units of work the worker's pipeline hands from its consumer side to its execution
side (`worker.pipeline`), and the pure decision of which lane's execution thread runs
which records.

A unit is one poll's records, with the offsets that committing it moves each partition
to. A unit holds one lane's records; a lane's units run in the order they were polled,
and a partition belongs to one lane, so committing each finished unit's offsets never
passes a record whose result is not written.

Its records are decoded once, by whichever thread asks first (`Unit.decode`): the
consumer side before the hand-off, or the execution thread that runs it
(`worker.pipeline` says when).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass, field
from typing import Any

from inferfleet.clients.topics import Lane
from inferfleet.jobs.messages import JobMessage
from worker.batching import Poison, decode_records
from worker.lanes import lane_of

# A partition: (topic, partition number).
Partition = tuple[str, int]
# A unit's records decoded: its jobs and its poison.
Decoded = tuple[list[JobMessage], list[Poison]]


@dataclass(frozen=True)
class Unit:
    """One poll's records; what the execution side runs as one batch."""

    records: list[Any]
    # Where committing the unit moves each of its partitions: one past its last record.
    offsets: dict[Partition, int] = field(default_factory=dict)
    _decoding: _Once = field(default_factory=lambda: _Once(), repr=False, compare=False)

    def decode(self) -> Decoded:
        """The records' jobs (duplicates of a job ID kept once) and poison, decoded by
        the first caller; a caller meanwhile waits for that decoding to end."""
        return self._decoding.get(lambda: decode_records(self.records))

    @property
    def jobs(self) -> list[JobMessage]:
        return self.decode()[0]

    @property
    def poison(self) -> list[Poison]:
        return self.decode()[1]

    @property
    def partitions(self) -> Set[Partition]:
        return self.offsets.keys()

    @property
    def interactive(self) -> bool:
        """Whether any record came from a topic served in the interactive lane."""
        return any(lane_of(topic) == "interactive" for topic, _ in self.offsets)


def make_unit(records: Sequence[Any]) -> Unit:
    """The unit of polled records (decoded when its jobs are first asked for)."""
    offsets: dict[Partition, int] = {}
    for r in records:
        key = (r.topic, r.partition)
        offsets[key] = max(offsets.get(key, 0), r.offset + 1)
    return Unit(list(records), offsets)


def unit_lane(unit: Unit) -> Lane:
    """The lane whose execution thread runs `unit` (units hold one lane's records)."""
    return "interactive" if unit.interactive else "batch"


def lane_parts(records: Sequence[Any]) -> list[list[Any]]:
    """The units one poll's records become: one per lane that has records, interactive
    first, each keeping the records' order."""
    interactive = [r for r in records if lane_of(r.topic) == "interactive"]
    batch = [r for r in records if lane_of(r.topic) == "batch"]
    return [part for part in (interactive, batch) if part]


class _Once:
    """A value computed by the first caller of `get`, the others waiting for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value: Decoded | None = None

    def get(self, compute: Callable[[], Decoded]) -> Decoded:
        with self._lock:
            if self._value is None:
                self._value = compute()
            return self._value
