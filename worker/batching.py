"""Pure batch planning: decode records, group jobs by model version, stack, split.

Nothing here touches Kafka, Postgres or ONNX Runtime, so every rule is unit-tested.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from inferfleet.messages import JobMessage, UndecodableMessageError, decode

# ONNX tensor element types to the numpy dtypes that feed them.
ONNX_DTYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
    "tensor(string)": object,
}


@dataclass(frozen=True)
class Poison:
    """A record that is not a job message, with why."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    error: str


@dataclass(frozen=True)
class InputSpec:
    """One graph input: its name, element type and rank."""

    name: str
    onnx_type: str
    rank: int


@dataclass(frozen=True)
class Group:
    """Jobs of one (model, version), in the order they were polled."""

    model: str
    version: int
    jobs: list[JobMessage]


@dataclass(frozen=True)
class Outcome:
    """What one job ended with: outputs, or an error (type, message)."""

    job_id: str
    outputs: dict[str, Any] | None = None
    error: dict[str, str] | None = None


def decode_records(records: Iterable[Any]) -> tuple[list[JobMessage], list[Poison]]:
    """Decode polled records; duplicates of a job ID (redelivery) are kept once."""
    jobs: list[JobMessage] = []
    poison: list[Poison] = []
    seen: set[str] = set()
    for record in records:
        try:
            msg = decode(record.value)
        except UndecodableMessageError as e:
            poison.append(
                Poison(
                    record.topic, record.partition, record.offset, record.key, record.value, str(e)
                )
            )
            continue
        if msg.job_id not in seen:
            seen.add(msg.job_id)
            jobs.append(msg)
    return jobs, poison


def group_by_version(jobs: Iterable[JobMessage]) -> list[Group]:
    """Group jobs by (model, version), groups in order of first appearance."""
    groups: dict[tuple[str, int], list[JobMessage]] = {}
    for job in jobs:
        groups.setdefault((job.model, job.version), []).append(job)
    return [Group(model, version, members) for (model, version), members in groups.items()]


def stack_inputs(rows: Sequence[dict[str, Any]], specs: Sequence[InputSpec]) -> dict[str, Any]:
    """One array per graph input, rows stacked along the batch axis.

    Each request field feeds the graph input of the same name; an input of rank 2 whose
    instances are scalars gets shape `[batch, 1]`, as skl2onnx graphs expect.
    """
    feeds: dict[str, Any] = {}
    for spec in specs:
        dtype = ONNX_DTYPES.get(spec.onnx_type)
        if dtype is None:
            raise ValueError(f"graph input {spec.name!r} has unsupported type {spec.onnx_type}")
        values = [row[spec.name] for row in rows]
        array = np.asarray(values, dtype=dtype)
        while array.ndim < spec.rank:
            array = array[..., np.newaxis]
        feeds[spec.name] = array
    return feeds


def split_outputs(names: Sequence[str], arrays: Sequence[Any], count: int) -> list[dict[str, Any]]:
    """Row i of every output, as JSON-ready values, for each of `count` rows."""
    columns = []
    for name, array in zip(names, arrays, strict=True):
        if len(array) != count:
            raise ValueError(f"output {name!r} has {len(array)} rows for {count} inputs")
        columns.append(array.tolist())
    return [
        {name: column[i] for name, column in zip(names, columns, strict=True)} for i in range(count)
    ]


def run_isolating_failures(
    jobs: Sequence[JobMessage],
    run: Callable[[Sequence[JobMessage]], list[dict[str, Any]]],
) -> list[Outcome]:
    """Run `jobs` in one call; if the call fails, bisect so only the failing rows fail.

    A batch of n jobs with one bad row costs about 2·log2(n) extra calls, and every
    other row still gets its outputs.
    """
    if not jobs:
        return []
    try:
        outputs = run(jobs)
    except Exception as e:  # noqa: BLE001 - whatever the runtime raised is the rows' error
        if len(jobs) == 1:
            return [
                Outcome(
                    jobs[0].job_id,
                    error={"type": "inference_error", "message": f"{type(e).__name__}: {e}"},
                )
            ]
        middle = len(jobs) // 2
        return run_isolating_failures(jobs[:middle], run) + run_isolating_failures(
            jobs[middle:], run
        )
    return [Outcome(job.job_id, outputs=out) for job, out in zip(jobs, outputs, strict=True)]
