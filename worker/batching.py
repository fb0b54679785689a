"""Pure batch planning: decode records, group jobs by model version, isolate failures.

Nothing here touches Kafka, Postgres or ONNX Runtime, so every rule is unit-tested.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from inferfleet.jobs.messages import JobMessage, UndecodableMessageError, decode


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
class Group:
    """Jobs of one (model, version), in the order they were polled."""

    model: str
    version: int
    jobs: list[JobMessage]


# An error message is cut to this many characters: it travels in a Kafka header and a
# Postgres row, and one that outgrew either would fail its whole batch.
MAX_ERROR_CHARS = 2000


def bounded(error: dict[str, str]) -> dict[str, str]:
    """`error` with each value cut to `MAX_ERROR_CHARS` and NUL (which Postgres cannot
    store) replaced by U+FFFD."""
    out = {}
    for key, value in error.items():
        text = str(value).replace("\x00", "\ufffd")
        out[key] = text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS] + "…"
    return out


@dataclass(frozen=True)
class Outcome:
    """What one job ended with: outputs, or an error (type, message), `bounded`.

    An error that is not `retriable` (an input that can never run) is final at once.
    """

    job_id: str
    outputs: dict[str, Any] | None = None
    error: dict[str, str] | None = None
    retriable: bool = True
    # Where outputs too large to store inline were written (then `outputs` is None).
    output_uri: str | None = None

    def __post_init__(self) -> None:
        if self.error is not None:
            object.__setattr__(self, "error", bounded(self.error))


def decode_records(records: Iterable[Any]) -> tuple[list[JobMessage], list[Poison]]:
    """Decode polled records; duplicates of a job ID (redelivery) are kept once."""
    jobs: list[JobMessage] = []
    poison: list[Poison] = []
    seen: set[str] = set()
    for record in records:
        try:
            msg = decode(record.value)
        except Exception as e:  # noqa: BLE001 - whatever the record does, it is this record's
            error = str(e) if isinstance(e, UndecodableMessageError) else f"{type(e).__name__}: {e}"
            poison.append(
                Poison(
                    record.topic, record.partition, record.offset, record.key, record.value, error
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


def settle(
    outcomes: Sequence[Outcome], attempts: Mapping[str, int], max_attempts: int
) -> tuple[list[Outcome], list[str]]:
    """Split outcomes into those to write now and the failed jobs to try again.

    A failed job is tried again while it has had fewer than `max_attempts` attempts
    (redeliveries counted) and its error is retriable; then its failure is final.
    """
    final: list[Outcome] = []
    retry: list[str] = []
    for outcome in outcomes:
        tries = attempts.get(outcome.job_id, max_attempts)
        if outcome.error is not None and outcome.retriable and tries < max_attempts:
            retry.append(outcome.job_id)
        else:
            final.append(outcome)
    return final, retry


def chunks(
    jobs: Sequence[JobMessage], size: int, length: Callable[[JobMessage], int] | None = None
) -> list[list[JobMessage]]:
    """Split a group into runtime calls of at most `size` jobs.

    With `length` (a text model's input length), jobs are bucketed: sorted by length
    before splitting, so each call pads its sequences to a similar longest one.
    """
    ordered = sorted(jobs, key=length) if length is not None else list(jobs)
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


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
