"""The plan of one polled batch: what runs, what waits, what is dead-lettered, what runs
alone. One pure function (`plan_batch`) over what was decoded and what the claim found,
so every rule is table-tested without services.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from inferfleet.jobs.messages import JobMessage
from worker.batching import Poison
from worker.isolation import Redelivered
from worker.persist import Claim

# A (model, version) a job names.
Version = tuple[str, int]


@dataclass(frozen=True)
class Plan:
    """What to do with each decoded job and undecodable record of one batch."""

    # Jobs the claim took, in polled order, with their attempts (this one included).
    run: list[JobMessage]
    attempts: Mapping[str, int]
    # Jobs whose version is not loaded yet and that are still unfinished: back at the
    # end of their topic, unclaimed.
    put_back: list[JobMessage]
    # Records that are not job messages, copied to their topic's DLQ.
    dead_letter: list[Poison]
    # Jobs another worker left `running`, in polled order: each taken and run alone.
    alone: list[JobMessage]
    redelivered: Mapping[str, Redelivered]
    # Jobs whose deadline passed before they started (the claim expired them).
    expired: list[JobMessage]
    # The jobs that were offered to the claim (those not waiting for their version).
    claimable: list[JobMessage]
    # Every job waits for its version: nothing else to do, so the loop pauses briefly.
    only_waiting: bool

    @property
    def skipped(self) -> int:
        """Claimable jobs the claim left alone: terminal, cancelled or unknown."""
        return len(self.claimable) - len(self.run) - len(self.alone) - len(self.expired)


def claimable(jobs: Sequence[JobMessage], waiting: Collection[Version]) -> list[JobMessage]:
    """The jobs to claim: those whose version is not waiting to load."""
    return [j for j in jobs if (j.model, j.version) not in waiting]


def plan_batch(
    jobs: Sequence[JobMessage],
    poison: Sequence[Poison],
    waiting: Collection[Version],
    unfinished: Collection[str],
    claim: Claim,
) -> Plan:
    """Plan a batch of decoded `jobs` (each job ID once) and `poison` records.

    `waiting` names the versions not loaded yet; `unfinished`, which of the jobs naming
    them are still queued or running (a finished one needs no message); `claim`, what
    claiming the `claimable` jobs found.
    """
    offered = claimable(jobs, waiting)
    return Plan(
        run=[j for j in offered if j.job_id in claim.taken],
        attempts=dict(claim.taken),
        put_back=[j for j in jobs if (j.model, j.version) in waiting and j.job_id in unfinished],
        dead_letter=list(poison),
        alone=[j for j in offered if j.job_id in claim.redelivered],
        redelivered=dict(claim.redelivered),
        expired=[j for j in offered if j.job_id in claim.expired],
        claimable=offered,
        only_waiting=bool(jobs) and not offered,
    )
