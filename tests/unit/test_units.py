"""Units of the worker's pipeline: decoding and offsets, and where a unit joins the
hand-off queue (no services)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from inferfleet.jobs import messages
from inferfleet.jobs.messages import JobMessage
from worker.units import lane_parts, make_unit, unit_lane

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


def recs(*topics: str) -> list[Rec]:
    return [Rec(t, 0, i, None, b"") for i, t in enumerate(topics)]


@pytest.mark.parametrize(
    ("topics", "parts"),
    [
        ([], []),
        ([BATCH, BATCH], [[BATCH, BATCH]]),
        ([INTERACTIVE, INTERACTIVE], [[INTERACTIVE, INTERACTIVE]]),
        ([BATCH, INTERACTIVE, BATCH], [[INTERACTIVE], [BATCH, BATCH]]),
    ],
)
def test_a_poll_becomes_a_unit_per_lane_interactive_first(
    topics: list[str], parts: list[list[str]]
) -> None:
    found = lane_parts(recs(*topics))

    assert [[r.topic for r in part] for part in found] == parts
    assert [r.offset for part in found for r in part if r.topic == BATCH] == [
        i for i, t in enumerate(topics) if t == BATCH
    ], "each lane keeps the records' order"
    assert [unit_lane(make_unit(part)) for part in found] == [
        "interactive" if part[0].topic == INTERACTIVE else "batch" for part in found
    ]
