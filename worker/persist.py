"""The worker's writes: claim a batch of jobs, then record every outcome at once.

Both are guarded by status, so a redelivered message never rewrites a terminal job:
only `queued` or `running` jobs are claimed, and only `running` jobs take a result.
Jobs that end here (a result, or an expiry) get their webhook events in the same
transaction (`inferfleet.outbox`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import Engine, text

from inferfleet.outbox import add_job_events
from worker.batching import Outcome

# One statement claims the batch: runnable jobs become `running`; jobs whose deadline
# passed become `expired`. Terminal, cancelled and unknown jobs are not touched.
CLAIM = text(
    """
    UPDATE jobs
       SET status = CASE WHEN deadline <= now() THEN 'expired' ELSE 'running' END,
           started_at = CASE WHEN deadline <= now() THEN started_at ELSE now() END,
           attempts = CASE WHEN deadline <= now() THEN attempts ELSE attempts + 1 END,
           completed_at = CASE WHEN deadline <= now() THEN now() END,
           produced_at = coalesce(produced_at, now()),
           error = CASE WHEN deadline <= now()
                        THEN jsonb_build_object('type', 'expired', 'message',
                                                'the job was not started before its deadline')
                   END
     WHERE id = ANY(:ids) AND status IN ('queued', 'running')
    RETURNING id, status, attempts
    """
)

FINISH = text(
    """
    UPDATE jobs AS j
       SET status = v.status, outputs = v.outputs, output_uri = v.output_uri,
           error = v.error, completed_at = now()
      FROM unnest(CAST(:ids AS text[]), CAST(:statuses AS text[]),
                  CAST(:outputs AS jsonb[]), CAST(:output_uris AS text[]),
                  CAST(:errors AS jsonb[]))
           AS v(id, status, outputs, output_uri, error)
     WHERE j.id = v.id AND j.status = 'running'
    RETURNING j.id, j.webhook IS NOT NULL AND j.batch_id IS NULL AS notify
    """
)


def claim(
    engine: Engine, job_ids: Sequence[str], *, retry_window_s: float
) -> tuple[dict[str, int], set[str]]:
    """Mark runnable jobs `running` (one statement); returns them with their attempt
    counts (this one included), and the IDs of jobs that expired instead.

    Jobs that are already terminal, cancelled or unknown are in neither: their messages
    are acknowledged without running them.
    """
    if not job_ids:
        return {}, set()
    claimed: dict[str, int] = {}
    expired: set[str] = set()
    with engine.begin() as conn:
        for row in conn.execute(CLAIM, {"ids": list(job_ids)}):
            if row.status == "expired":
                expired.add(row.id)
            else:
                claimed[row.id] = row.attempts
        add_job_events(conn, sorted(expired), retry_window_s)
    return claimed, expired


REQUEUE = text("UPDATE jobs SET status = 'queued' WHERE id = ANY(:ids) AND status = 'running'")


def finish(
    engine: Engine,
    outcomes: Sequence[Outcome],
    requeued: Sequence[str] = (),
    *,
    retry_window_s: float,
) -> int:
    """Write every outcome, and put `requeued` jobs back to `queued`, in one transaction,
    with the webhook events of the jobs that asked for one.

    Returns how many jobs took their result.
    """
    if not outcomes and not requeued:
        return 0
    rows = [_encode(o) for o in outcomes]
    params = {
        "ids": [o.job_id for o in outcomes],
        "statuses": ["succeeded" if error is None else "failed" for _, error in rows],
        "outputs": [outputs for outputs, _ in rows],
        "output_uris": [o.output_uri for o in outcomes],
        "errors": [error for _, error in rows],
    }
    with engine.begin() as conn:
        if requeued:
            conn.execute(REQUEUE, {"ids": list(requeued)})
        if not outcomes:
            return 0
        finished = list(conn.execute(FINISH, params))
        add_job_events(conn, [r.id for r in finished if r.notify], retry_window_s)
        return len(finished)


def _encode(outcome: Outcome) -> tuple[str | None, str | None]:
    """(outputs JSON, error JSON) of one outcome; outputs that JSON cannot hold fail the job."""
    if outcome.error is not None:
        return None, json.dumps(outcome.error)
    if outcome.outputs is None:  # stored in S3, named by output_uri
        return None, None
    try:
        return json.dumps(outcome.outputs, allow_nan=False), None
    except ValueError:
        error = {"type": "invalid_output", "message": "the model produced NaN or infinity"}
        return None, json.dumps(error)


PENDING = text(
    """
    SELECT DISTINCT model, version FROM jobs
     WHERE status IN ('queued', 'running') AND model = ANY(:models)
    """
)


def pending_versions(engine: Engine, models: Sequence[str]) -> set[tuple[str, int]]:
    """The (model, version) pairs that jobs not yet finished still name."""
    with engine.connect() as conn:
        return {(r.model, r.version) for r in conn.execute(PENDING, {"models": list(models)})}
