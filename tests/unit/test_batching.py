"""worker.batching: decode, group, and failure isolation by bisection."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from inferfleet.jobs.messages import JobMessage, encode
from worker.batching import (
    MAX_ERROR_CHARS,
    Group,
    Outcome,
    Poison,
    chunks,
    decode_records,
    group_by_version,
    run_isolating_failures,
    settle,
)

ENQUEUED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@dataclass(frozen=True)
class FakeRecord:
    """The fields of a kafka-python ConsumerRecord that decode_records reads."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def job(
    job_id: str, model: str = "fraud", version: int = 1, inputs: dict[str, Any] | None = None
) -> JobMessage:
    return JobMessage(
        job_id=job_id,
        tenant="default",
        model=model,
        version=version,
        inputs={"x": 1} if inputs is None else inputs,
        input_uri=None,
        enqueued_at=ENQUEUED,
        deadline=None,
        request_id=None,
    )


def record(value: bytes | None, offset: int = 0, partition: int = 3) -> FakeRecord:
    return FakeRecord("inferfleet.jobs.fraud.interactive", partition, offset, b"key", value)


# decode_records


def test_decode_records_returns_jobs_in_poll_order() -> None:
    sent = [job("j1"), job("j2", version=2), job("j3", model="churn")]

    jobs, poison = decode_records(record(encode(m), offset=i) for i, m in enumerate(sent))

    assert jobs == sent
    assert poison == []


@pytest.mark.parametrize(
    ("value", "error_fragment"),
    [
        pytest.param(None, "not a JSON object", id="tombstone"),
        pytest.param(b"not json", "malformed job message", id="not-json"),
        pytest.param(b"[1, 2]", "not a JSON object", id="json-array"),
        pytest.param(b'{"v": 2}', "unknown message version 2", id="future-version"),
    ],
)
def test_decode_records_sets_undecodable_values_aside_with_their_position(
    value: bytes | None, error_fragment: str
) -> None:
    good = job("j1")
    bad = FakeRecord("inferfleet.jobs.fraud.bulk", 7, 41, b"bad-key", value)

    jobs, poison = decode_records([bad, record(encode(good), offset=42)])

    assert jobs == [good]
    assert len(poison) == 1
    p = poison[0]
    assert isinstance(p, Poison)
    assert (p.topic, p.partition, p.offset, p.key, p.value) == (
        "inferfleet.jobs.fraud.bulk",
        7,
        41,
        b"bad-key",
        value,
    )
    assert error_fragment in p.error


def test_decode_records_keeps_a_redelivered_job_once_first_copy_wins() -> None:
    first = job("j1", inputs={"x": 1})
    redelivered = job("j1", inputs={"x": 2})
    other = job("j2")

    jobs, poison = decode_records(
        [record(encode(first), 0), record(encode(other), 1), record(encode(redelivered), 2)]
    )

    assert jobs == [first, other]
    assert poison == []


# group_by_version


def test_group_by_version_groups_in_order_of_first_appearance() -> None:
    a, b, c, d, e = (
        job("a", "fraud", 1),
        job("b", "fraud", 2),
        job("c", "fraud", 1),
        job("d", "churn", 1),
        job("e", "fraud", 2),
    )

    groups = group_by_version([a, b, c, d, e])

    assert groups == [
        Group("fraud", 1, [a, c]),
        Group("fraud", 2, [b, e]),
        Group("churn", 1, [d]),
    ]


def test_group_by_version_of_no_jobs_is_no_groups() -> None:
    assert group_by_version([]) == []


# chunks


@pytest.mark.parametrize(("count", "size", "sizes"), [(0, 4, []), (3, 4, [3]), (9, 4, [4, 4, 1])])
def test_chunks_split_a_group_into_calls_of_at_most_size(
    count: int, size: int, sizes: list[int]
) -> None:
    jobs = [job(f"j{i}") for i in range(count)]

    split = chunks(jobs, size)

    assert [len(c) for c in split] == sizes
    assert [j.job_id for c in split for j in c] == [j.job_id for j in jobs]


def test_chunks_bucket_text_jobs_by_length() -> None:
    texts = ["a" * n for n in (9, 1, 7, 3, 8, 2)]
    jobs = [job(f"j{i}", inputs={"text": t}) for i, t in enumerate(texts)]

    split = chunks(jobs, 2, lambda j: len((j.inputs or {})["text"]))

    assert [[len((j.inputs or {})["text"]) for j in c] for c in split] == [[1, 2], [3, 7], [8, 9]]


# run_isolating_failures


@dataclass
class FakeRun:
    """Doubles each row's `x`; any batch holding a poisoned row raises, like ORT would."""

    poisoned: set[int]
    batch_sizes: list[int] = field(default_factory=list)

    def __call__(self, jobs: Sequence[JobMessage]) -> list[dict[str, Any]]:
        self.batch_sizes.append(len(jobs))
        xs = [j.inputs["x"] for j in jobs if j.inputs is not None]
        bad = sorted(self.poisoned.intersection(xs))
        if bad:
            raise RuntimeError(f"row {bad[0]} is poisoned")
        return [{"y": 2 * x} for x in xs]


def numbered_jobs(n: int) -> list[JobMessage]:
    return [job(f"job-{i}", inputs={"x": i}) for i in range(n)]


def test_run_isolating_failures_runs_a_good_batch_in_one_call() -> None:
    jobs = numbered_jobs(64)
    run = FakeRun(poisoned=set())

    outcomes = run_isolating_failures(jobs, run)

    assert run.batch_sizes == [64]
    assert outcomes == [Outcome(f"job-{i}", outputs={"y": 2 * i}) for i in range(64)]


@pytest.mark.parametrize("bad", [0, 37, 63])
def test_run_isolating_failures_fails_one_poisoned_row_alone(bad: int) -> None:
    jobs = numbered_jobs(64)
    run = FakeRun(poisoned={bad})

    outcomes = run_isolating_failures(jobs, run)

    assert [o.job_id for o in outcomes] == [j.job_id for j in jobs]
    assert outcomes[bad] == Outcome(
        f"job-{bad}",
        error={"type": "inference_error", "message": f"RuntimeError: row {bad} is poisoned"},
    )
    assert all(o.outputs == {"y": 2 * i} for i, o in enumerate(outcomes) if i != bad)
    # One failing call at each size 64, 32, ..., 1 (7) and one good sibling half at
    # each size 32, 16, ..., 1 (6): 2 * log2(64) + 1, not 64.
    assert len(run.batch_sizes) == 13
    assert sum(run.batch_sizes) == 64 + 2 * (32 + 16 + 8 + 4 + 2 + 1)


def test_run_isolating_failures_fails_two_poisoned_rows_and_no_other() -> None:
    jobs = numbered_jobs(64)
    run = FakeRun(poisoned={0, 63})

    outcomes = run_isolating_failures(jobs, run)

    failed = [o.job_id for o in outcomes if o.error is not None]
    assert failed == ["job-0", "job-63"]
    assert all(o.outputs == {"y": 2 * i} for i, o in enumerate(outcomes) if i not in (0, 63))
    # The full batch fails, then each half of 32 isolates its own bad row in
    # 6 failing calls (32, 16, ..., 1) and 5 good siblings (16, ..., 1).
    assert len(run.batch_sizes) == 1 + 2 * (6 + 5)


def test_run_isolating_failures_fails_a_single_job_batch_with_one_call() -> None:
    run = FakeRun(poisoned={0})

    outcomes = run_isolating_failures(numbered_jobs(1), run)

    assert run.batch_sizes == [1]
    assert outcomes == [
        Outcome(
            "job-0",
            error={"type": "inference_error", "message": "RuntimeError: row 0 is poisoned"},
        )
    ]


def test_run_isolating_failures_fails_every_row_when_every_call_fails() -> None:
    def always_fails(jobs: Sequence[JobMessage]) -> list[dict[str, Any]]:
        raise ValueError("session closed")

    outcomes = run_isolating_failures(numbered_jobs(5), always_fails)

    assert [o.error for o in outcomes] == [
        {"type": "inference_error", "message": "ValueError: session closed"}
    ] * 5
    assert all(o.outputs is None for o in outcomes)


# settle


def test_settle_retries_failures_until_the_last_attempt() -> None:
    error = {"type": "inference_error", "message": "x"}
    outcomes = [
        Outcome("ok", outputs={"y": 1}),
        Outcome("first-try", error=error),
        Outcome("last-try", error=error),
        Outcome("unclaimed", error=error),
    ]

    final, retry = settle(outcomes, {"ok": 1, "first-try": 1, "last-try": 3}, max_attempts=3)

    assert retry == ["first-try"]
    assert [o.job_id for o in final] == ["ok", "last-try", "unclaimed"]


def test_settle_with_one_attempt_never_retries() -> None:
    outcomes = [Outcome("a", error={"type": "inference_error", "message": "x"})]

    assert settle(outcomes, {"a": 1}, max_attempts=1) == (outcomes, [])


def test_an_error_is_bounded_so_it_fits_a_header_and_a_row() -> None:
    huge = "'" + "x" * 5_000_000 + "' is not of type 'integer'"
    outcome = Outcome("job-1", error={"type": "invalid_input", "message": huge + "\x00"})
    assert outcome.error is not None
    assert len(outcome.error["message"]) == MAX_ERROR_CHARS + 1
    assert outcome.error["message"].endswith("…")
    short = Outcome("job-2", error={"type": "x", "message": "bad\x00byte"})
    assert short.error == {"type": "x", "message": "bad\ufffdbyte"}
