"""Recording that a job's message reached Kafka (`jobs.produced_at`).

A `queued` job without `produced_at` is one whose message may never have left (a crash
between the insert and the produce); the scheduler's sweep produces it after a grace
period. Whoever produces sets it once Kafka has acknowledged, and the worker's claim
sets it too, since a claimed job's message plainly arrived. A worker's retry or
put-back moves it to just before that message is sent (`worker.persist`), so it always
dates the job's latest message: the sweep of produced jobs no worker claimed relies on
that (`scheduler.sweeps`).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, text

# Only rows still `queued` (the sweep looks at no others) and not held by anyone: a
# worker may already be writing the job (waiting on its row could deadlock with the
# worker's multi-row updates), and rewriting a finished row would be a second write of a
# terminal job.
MARK_PRODUCED = text(
    """
    UPDATE jobs SET produced_at = now()
     WHERE id IN (SELECT id FROM jobs
                   WHERE id = ANY(:ids) AND status = 'queued' AND produced_at IS NULL
                     FOR UPDATE SKIP LOCKED)
    """
)


def mark_produced(conn: Connection, job_ids: Sequence[str]) -> None:
    """Set `produced_at` on those of `job_ids` that are still waiting to be claimed."""
    if job_ids:
        conn.execute(MARK_PRODUCED, {"ids": list(job_ids)})
