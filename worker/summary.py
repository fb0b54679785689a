"""One handled batch, counted: the summary log line, job and batch metrics, expiries."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from inferfleet.jobs.messages import JobMessage
from worker import logs
from worker.batching import Outcome, Poison
from worker.metrics import WorkerMetrics
from worker.persist import Claim

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchSummary:
    """Counts of one handled batch, for the log line and for tests."""

    records: int
    claimed: int
    succeeded: int
    failed: int
    retried: int
    expired: int
    skipped: int
    dead_lettered: int


@dataclass(frozen=True)
class Handled:
    """What one batch was and how its jobs ended."""

    records: Sequence[Any]
    jobs: Sequence[JobMessage]
    poison: Sequence[Poison]
    claim: Claim
    final: Sequence[Outcome]
    retried: int


def summarise(metrics: WorkerMetrics, started: float, batch: Handled, written: int) -> BatchSummary:
    """Count, log and measure one handled batch (`started`: its `time.monotonic()`)."""
    claim = batch.claim
    failed = sum(1 for o in batch.final if o.error is not None)
    _count(metrics, batch.jobs, batch.final, claim.expired)
    for job in batch.jobs:
        if job.job_id in claim.expired:
            log.info("expired before it started", extra=logs.job_fields(job))
    taken = len(claim.taken) + len(claim.redelivered)
    summary = BatchSummary(
        records=len(batch.records),
        claimed=taken,
        succeeded=len(batch.final) - failed,
        failed=failed,
        retried=batch.retried,
        expired=len(claim.expired),
        skipped=len(batch.jobs) - taken - len(claim.expired),
        dead_lettered=len(batch.poison) + failed,
    )
    elapsed = time.monotonic() - started
    metrics.dead_letters.inc(summary.dead_lettered)
    metrics.batch_records.observe(len(batch.records))
    metrics.batch_seconds.observe(elapsed)
    log.info(
        "batch records=%d claimed=%d succeeded=%d failed=%d retried=%d expired=%d "
        "skipped=%d dead_lettered=%d redelivered=%d written=%d seconds=%.3f",
        summary.records,
        summary.claimed,
        summary.succeeded,
        summary.failed,
        summary.retried,
        summary.expired,
        summary.skipped,
        summary.dead_lettered,
        len(claim.redelivered),
        written,
        elapsed,
    )
    return summary


def _count(
    metrics: WorkerMetrics,
    jobs: Sequence[JobMessage],
    outcomes: Sequence[Outcome],
    expired: set[str],
) -> None:
    by_id = {j.job_id: j.model for j in jobs}
    counts: Counter[tuple[str, str]] = Counter(
        (by_id[o.job_id], "failed" if o.error else "succeeded") for o in outcomes
    )
    counts.update((by_id[job_id], "expired") for job_id in expired)
    for (model, status), n in counts.items():
        metrics.jobs.labels(model, status).inc(n)
