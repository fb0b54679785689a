"""A failure that belongs to one job fails that job alone.

What the worker guarantees:

- An exception raised while one job is fetched, parsed, validated, preprocessed, run
  or encoded, whatever its type, fails that job (tried again while it has attempts
  left, then dead-lettered), never the process and never its neighbours. Only the
  failure of a service every job needs (`TRANSIENT`: Postgres, Kafka, S3) fails the
  whole batch, which is then tried again.
- A failure that cannot be caught (a segmentation fault or an out-of-memory kill in
  ONNX Runtime) ends the process with its batch uncommitted. The batch comes back to
  the next worker, whose claim finds the jobs the dead worker held still `running`
  (`persist.claim`). Those redelivered jobs run one at a time: each is taken alone just
  before it runs (`attempts` counts that take, and only that job's), marked as running
  alone (`error.type` `worker_crashed` while it runs; cleared when it ends), and its
  result is written before the next one is taken. A job that comes back still marked
  is the one its worker died running alone; once it has had `max_attempts` takes it is
  failed and dead-lettered (`worker_crashed`) without running again (taken first, with
  no attempt counted, since only the worker holding a job may write it).
- A worker whose batch an outage fails gives back the jobs it holds (`persist.release`:
  `queued`, their attempt taken back). One it was running alone keeps its mark, so the
  next claim runs it alone again, as a job whose worker did not die running it.
- So a job that kills every worker costs at most `max_attempts` crashes (one in its
  batch, the rest alone) and ends `failed` with `attempts` equal to `max_attempts`
  (at least two). Its neighbours never run beside it again, their attempts grow by at
  most one per crash, and no job is failed unrun for a crash it did not cause: a job
  failed unrun is always one whose worker died running it alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from inferfleet.clients.outages import OUTAGES
from inferfleet.errors import QueueUnavailableError
from inferfleet.jobs.messages import JobMessage
from worker import logs
from worker.batching import Outcome

log = logging.getLogger(__name__)

# Failures of a service the worker depends on, Kafka's refusal of a record it sends
# (retries, dead letters, put-backs) included; the same work is tried again later.
TRANSIENT: tuple[type[Exception], ...] = (*OUTAGES, QueueUnavailableError)

# `error.type` of a job running alone after a redelivery, and of one failed for it.
CRASHED = "worker_crashed"


@dataclass(frozen=True)
class Redelivered:
    """A job found `running` at claim time: a worker took it and never finished it."""

    attempts: int
    # Its last take ran it alone (`CRASHED` mark still set): that worker died running it.
    died_alone: bool


def doomed(found: Redelivered, max_attempts: int) -> bool:
    """Whether a redelivered job is failed without running: its worker died running it
    alone, and it has had its `max_attempts` takes."""
    return found.died_alone and found.attempts >= max_attempts


def crashed_error(attempts: int) -> dict[str, str]:
    """The error of a job failed for killing the workers that ran it."""
    return {
        "type": CRASHED,
        "message": (
            f"the worker running this job stopped (crashed or was killed) each time it "
            f"ran alone; after {attempts} attempts it is failed without running again"
        ),
    }


def unexpected(job_id: str, kind: str, stage: str, error: BaseException) -> Outcome:
    """The failure of one job whose `stage` raised something unforeseen; retried while
    the job has attempts left, since nothing says it could not work next time."""
    message = f"{stage} failed: {type(error).__name__}: {error}"
    return Outcome(job_id, error={"type": kind, "message": message}, retriable=True)


def guarded(
    jobs: Sequence[JobMessage],
    run: Callable[[Sequence[JobMessage]], list[Outcome]],
    kind: str,
    stage: str,
) -> list[Outcome]:
    """`run(jobs)`; if it raises anything but `TRANSIENT`, bisect so that only the jobs
    that make it raise fail (`unexpected`), and every other job gets its outcome."""
    if not jobs:
        return []
    try:
        return run(jobs)
    except TRANSIENT:
        raise
    except Exception as e:  # noqa: BLE001 - whatever one job raises is that job's failure
        if len(jobs) == 1:
            log.warning("%s failed: %r", stage, e, extra=logs.job_fields(jobs[0]))
            return [unexpected(jobs[0].job_id, kind, stage, e)]
        middle = len(jobs) // 2
        return guarded(jobs[:middle], run, kind, stage) + guarded(jobs[middle:], run, kind, stage)


class Runner(Protocol):
    """What `run_alone` needs of the worker."""

    def take_alone(self, job_id: str, counted: bool = True) -> int | None:
        """Take one redelivered job, marked as running alone; its attempts (this take
        counted unless not `counted`), or None if it is no longer `running` (another
        worker finished it)."""

    def run_taken(
        self, jobs: Sequence[JobMessage], attempts: Mapping[str, int]
    ) -> tuple[list[Outcome], list[str]]:
        """Run taken jobs; (final outcomes, IDs to try again). Raises only TRANSIENT."""

    def record(self, jobs: Sequence[JobMessage], final: list[Outcome], retry: list[str]) -> int:
        """Write the outcomes and send retries and dead letters; how many were written."""


def run_alone(
    jobs: Sequence[JobMessage],
    found: Mapping[str, Redelivered],
    max_attempts: int,
    runner: Runner,
) -> tuple[list[Outcome], list[str]]:
    """Run redelivered `jobs` one at a time, in order, each written before the next is
    taken (module docstring); returns every final outcome and every retried ID.

    A doomed job is taken too (no attempt counted), since only the worker holding a job
    may write it.
    """
    finals: list[Outcome] = []
    retries: list[str] = []
    for job in jobs:
        previous = found[job.job_id]
        unrun = doomed(previous, max_attempts)
        attempts = runner.take_alone(job.job_id, counted=not unrun)
        if attempts is None:
            continue
        if unrun:
            log.error(
                "its worker died running it alone, %d attempts: failing it unrun",
                attempts,
                extra=logs.job_fields(job),
            )
            final = [Outcome(job.job_id, error=crashed_error(attempts), retriable=False)]
            retry: list[str] = []
        else:
            log.info("redelivered; running it alone", extra=logs.job_fields(job))
            final, retry = runner.run_taken([job], {job.job_id: attempts})
        runner.record([job], final, retry)
        finals.extend(final)
        retries.extend(retry)
    return finals, retries
