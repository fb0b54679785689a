"""worker.plan.plan_batch: from decoded jobs and what the claim found to what runs, what
is put back, what is dead-lettered and what runs alone (a table, no services)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from inferfleet.jobs.messages import JobMessage
from worker.batching import Poison
from worker.isolation import Redelivered
from worker.persist import Claim
from worker.plan import plan_batch


def job(spec: str) -> JobMessage:
    """`id` or `id@version` (model `fraud`; version 1 unless named)."""
    job_id, _, version = spec.partition("@")
    return JobMessage(
        job_id=job_id,
        tenant="acme",
        model="fraud",
        version=int(version or 1),
        inputs={"x": 1},
        input_uri=None,
        enqueued_at=datetime(2026, 1, 2, tzinfo=UTC),
        deadline=None,
        request_id=None,
    )


POISON = Poison("inferfleet.jobs.fraud.interactive", 0, 7, None, b"{", "not JSON")


@dataclass(frozen=True)
class Case:
    jobs: list[str]
    # What the claim found: taken (with attempts), expired, redelivered.
    taken: dict[str, int] = field(default_factory=dict)
    expired: set[str] = field(default_factory=set)
    redelivered: set[str] = field(default_factory=set)
    waiting: set[int] = field(default_factory=set)  # versions of `fraud` not loaded yet
    unfinished: set[str] = field(default_factory=set)
    poison: int = 0
    # Expected:
    run: list[str] = field(default_factory=list)
    put_back: list[str] = field(default_factory=list)
    alone: list[str] = field(default_factory=list)
    expired_jobs: list[str] = field(default_factory=list)
    claimable: list[str] | None = None  # None: every job
    skipped: int = 0
    only_waiting: bool = False


CASES = {
    "every job taken runs, in polled order": Case(
        jobs=["a", "b", "c"],
        taken={"c": 1, "a": 2, "b": 1},
        run=["a", "b", "c"],
    ),
    "a job whose version loads is put back unclaimed": Case(
        jobs=["a", "b@2", "c"],
        taken={"a": 1, "c": 1},
        waiting={2},
        unfinished={"b"},
        run=["a", "c"],
        put_back=["b"],
        claimable=["a", "c"],
    ),
    "a waiting job already finished is neither put back nor run": Case(
        jobs=["a", "b@2"],
        taken={"a": 1},
        waiting={2},
        run=["a"],
        claimable=["a"],
    ),
    "when every job waits, the loop pauses": Case(
        jobs=["a@2", "b@3"],
        waiting={2, 3},
        unfinished={"a", "b"},
        put_back=["a", "b"],
        claimable=[],
        only_waiting=True,
    ),
    "redelivered jobs run alone, in polled order": Case(
        jobs=["r2", "a", "r1"],
        taken={"a": 1},
        redelivered={"r1", "r2"},
        run=["a"],
        alone=["r2", "r1"],
    ),
    "an expired job does not run": Case(
        jobs=["a", "late"],
        taken={"a": 1},
        expired={"late"},
        run=["a"],
        expired_jobs=["late"],
    ),
    "terminal, cancelled and unknown jobs are skipped": Case(
        jobs=["a", "done", "cancelled"],
        taken={"a": 3},
        run=["a"],
        skipped=2,
    ),
    "undecodable records are dead-lettered; nothing waits": Case(jobs=[], poison=2),
    "poison beside jobs changes nothing else": Case(
        jobs=["a"], taken={"a": 1}, poison=1, run=["a"]
    ),
    "everything at once": Case(
        jobs=["a", "w@2", "r", "late", "gone", "wdone@2"],
        taken={"a": 1},
        expired={"late"},
        redelivered={"r"},
        waiting={2},
        unfinished={"w"},
        poison=1,
        run=["a"],
        put_back=["w"],
        alone=["r"],
        expired_jobs=["late"],
        claimable=["a", "r", "late", "gone"],
        skipped=1,
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_plan(case: Case) -> None:
    jobs = [job(spec) for spec in case.jobs]
    claim = Claim(
        taken=case.taken,
        expired=case.expired,
        redelivered={i: Redelivered(1, died_alone=False) for i in case.redelivered},
    )
    waiting = {("fraud", v) for v in case.waiting}

    plan = plan_batch(jobs, [POISON] * case.poison, waiting, case.unfinished, claim)

    assert [j.job_id for j in plan.run] == case.run
    assert plan.attempts == case.taken
    assert [j.job_id for j in plan.put_back] == case.put_back
    assert plan.dead_letter == [POISON] * case.poison
    assert [j.job_id for j in plan.alone] == case.alone
    assert set(plan.redelivered) == case.redelivered
    assert [j.job_id for j in plan.expired] == case.expired_jobs
    claimable = case.claimable if case.claimable is not None else [j.job_id for j in jobs]
    assert [j.job_id for j in plan.claimable] == claimable
    assert plan.skipped == case.skipped
    assert plan.only_waiting is case.only_waiting
