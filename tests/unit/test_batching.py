"""worker.batching: decode, group, stack, split, and failure isolation by bisection."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from inferfleet.messages import JobMessage, encode
from worker.batching import (
    Group,
    InputSpec,
    Outcome,
    Poison,
    decode_records,
    group_by_version,
    run_isolating_failures,
    split_outputs,
    stack_inputs,
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


# stack_inputs


@pytest.mark.parametrize(
    ("onnx_type", "values", "dtype"),
    [
        ("tensor(float)", [1.5, 2, 3.25], np.float32),
        ("tensor(double)", [1.5, 2, 3.25], np.float64),
        ("tensor(int64)", [1, 2, 3], np.int64),
        ("tensor(int32)", [1, 2, 3], np.int32),
        ("tensor(bool)", [True, False, True], np.bool_),
        ("tensor(string)", ["grocery", "travel", ""], np.object_),
    ],
)
@pytest.mark.parametrize(("rank", "shape"), [(1, (3,)), (2, (3, 1))])
def test_stack_inputs_stacks_scalars_along_the_batch_axis(
    onnx_type: str, values: list[Any], dtype: Any, rank: int, shape: tuple[int, ...]
) -> None:
    rows = [{"x": v} for v in values]

    feeds = stack_inputs(rows, [InputSpec("x", onnx_type, rank)])

    assert list(feeds) == ["x"]
    assert feeds["x"].dtype == dtype
    assert feeds["x"].shape == shape
    assert feeds["x"].ravel().tolist() == values


def test_stack_inputs_feeds_each_graph_input_from_the_field_of_its_name() -> None:
    rows = [
        {"amount": 10.0, "category": "travel", "ignored": "x"},
        {"amount": 20.5, "category": "grocery", "ignored": "y"},
    ]
    specs = [InputSpec("category", "tensor(string)", 2), InputSpec("amount", "tensor(float)", 2)]

    feeds = stack_inputs(rows, specs)

    assert set(feeds) == {"amount", "category"}
    assert feeds["amount"].tolist() == [[10.0], [20.5]]
    assert feeds["category"].tolist() == [["travel"], ["grocery"]]


def test_stack_inputs_keeps_vector_instances_as_rows() -> None:
    rows = [{"v": [1.0, 2.0, 3.0]}, {"v": [4.0, 5.0, 6.0]}]

    feeds = stack_inputs(rows, [InputSpec("v", "tensor(float)", 2)])

    assert feeds["v"].shape == (2, 3)


def test_stack_inputs_refuses_an_unsupported_type_naming_the_input() -> None:
    with pytest.raises(ValueError, match=r"'pixels' has unsupported type tensor\(float16\)"):
        stack_inputs([{"pixels": 1.0}], [InputSpec("pixels", "tensor(float16)", 2)])


# split_outputs


def test_split_outputs_gives_row_i_of_every_output_as_json_ready_values() -> None:
    labels = np.array([0, 1, 1], dtype=np.int64)
    probabilities = np.array([[0.9, 0.1], [0.25, 0.75], [0.5, 0.5]], dtype=np.float32)

    rows = split_outputs(["label", "probabilities"], [labels, probabilities], 3)

    assert [r["label"] for r in rows] == [0, 1, 1]
    assert rows[1]["probabilities"] == [0.25, 0.75]
    assert rows[0]["probabilities"] == pytest.approx([0.9, 0.1])
    for row in rows:
        assert type(row["label"]) is int
        assert all(type(p) is float for p in row["probabilities"])
    assert json.loads(json.dumps(rows)) == rows


def test_split_outputs_of_no_rows_is_empty() -> None:
    assert split_outputs(["label"], [np.array([], dtype=np.int64)], 0) == []


def test_split_outputs_refuses_an_output_with_the_wrong_row_count() -> None:
    labels = np.array([0, 1, 1])
    scores = np.array([0.1, 0.2])

    with pytest.raises(ValueError, match=r"output 'score' has 2 rows for 3 inputs"):
        split_outputs(["label", "score"], [labels, scores], 3)


def test_split_outputs_refuses_more_names_than_outputs() -> None:
    with pytest.raises(ValueError, match="zip"):
        split_outputs(["label", "probabilities"], [np.array([0])], 1)


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
