"""Units of the worker's pipeline: decoding and offsets, and where a unit joins the
hand-off queue (no services)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from inferfleet.jobs import messages
from inferfleet.jobs.messages import JobMessage
from worker.units import Partition, hand_off_parts, make_unit, queue_position

INTERACTIVE = "inferfleet.jobs.fraud.interactive"
BATCH = "inferfleet.jobs.fraud.batch"


@dataclass(frozen=True)
class Rec:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


def job(job_id: str) -> bytes:
    return messages.encode(
        JobMessage(
            job_id=job_id,
            tenant="acme",
            model="fraud",
            version=1,
            inputs={"x": 1},
            input_uri=None,
            enqueued_at=datetime(2026, 1, 2, tzinfo=UTC),
            deadline=None,
            request_id=None,
        )
    )


def test_a_unit_commits_each_partition_one_past_its_last_record() -> None:
    records = [
        Rec(BATCH, 0, 7, b"a", job("a")),
        Rec(BATCH, 0, 8, b"b", job("b")),
        Rec(BATCH, 1, 3, b"c", job("c")),
        Rec(INTERACTIVE, 0, 41, None, b"{not json"),
        Rec(BATCH, 0, 9, b"a", job("a")),  # a redelivered copy
    ]
    unit = make_unit(records)

    assert unit.offsets == {(BATCH, 0): 10, (BATCH, 1): 4, (INTERACTIVE, 0): 42}
    assert [j.job_id for j in unit.jobs] == ["a", "b", "c"]
    assert [p.offset for p in unit.poison] == [41]
    assert unit.interactive


def test_a_unit_of_batch_records_is_not_interactive() -> None:
    assert not make_unit([Rec(BATCH, 0, 0, b"a", job("a"))]).interactive


B0: Partition = (BATCH, 0)
B1: Partition = (BATCH, 1)
I0: Partition = (INTERACTIVE, 0)
I1: Partition = (INTERACTIVE, 1)


@pytest.mark.parametrize(
    ("queued", "unit", "front", "position"),
    [
        ([], {I0}, True, 0),
        ([{B0}, {B1}], {B0}, False, 2),  # batch units go last
        ([{B0}, {B1}], {I0}, True, 0),  # interactive overtakes batch units
        ([{I0}, {B0}], {I0}, True, 1),  # but never a unit of its own partition
        ([{B0}, {I0, B1}, {B0}], {I0, I1}, True, 2),
        ([{B0, I1}, {B1}], {I1}, True, 1),
    ],
)
def test_queue_position(
    queued: list[set[Partition]], unit: set[Partition], front: bool, position: int
) -> None:
    assert queue_position(queued, unit, front) == position


def recs(*topics: str) -> list[Rec]:
    return [Rec(t, 0, i, None, b"") for i, t in enumerate(topics)]


@pytest.mark.parametrize(
    ("topics", "queue_empty", "parts"),
    [
        ([], True, []),
        ([BATCH, INTERACTIVE, BATCH], True, [[BATCH, INTERACTIVE, BATCH]]),  # nothing waits
        ([BATCH, BATCH], False, [[BATCH, BATCH]]),
        ([INTERACTIVE, INTERACTIVE], False, [[INTERACTIVE, INTERACTIVE]]),
        ([INTERACTIVE, BATCH, BATCH], False, [[INTERACTIVE], [BATCH, BATCH]]),
    ],
)
def test_hand_off_parts(topics: list[str], queue_empty: bool, parts: list[list[str]]) -> None:
    found = hand_off_parts(recs(*topics), queue_empty)

    assert [[r.topic for r in part] for part in found] == parts
