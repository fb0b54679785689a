"""One handled batch, counted: the numbers its summary line, its metrics and tests read."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from worker.batching import Outcome
from worker.plan import Plan


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

    records: int
    plan: Plan
    # Every final outcome: of the jobs run together, then of those run alone.
    final: Sequence[Outcome]
    retried: int
    # How many outcomes of the jobs run together were written.
    written: int


def summarise(batch: Handled) -> BatchSummary:
    """The counts of one handled batch."""
    plan = batch.plan
    failed = sum(1 for o in batch.final if o.error is not None)
    return BatchSummary(
        records=batch.records,
        claimed=len(plan.attempts) + len(plan.redelivered),
        succeeded=len(batch.final) - failed,
        failed=failed,
        retried=batch.retried,
        expired=len(plan.expired),
        skipped=plan.skipped,
        dead_lettered=len(plan.dead_letter) + failed,
    )


def job_counts(batch: Handled) -> Counter[tuple[str, str]]:
    """How many jobs of each model ended each way: (model, status) -> count."""
    model_of = {j.job_id: j.model for j in batch.plan.claimable}
    counts: Counter[tuple[str, str]] = Counter(
        (model_of[o.job_id], "failed" if o.error else "succeeded") for o in batch.final
    )
    counts.update((j.model, "expired") for j in batch.plan.expired)
    return counts
