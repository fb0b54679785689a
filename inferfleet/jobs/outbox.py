"""The webhook outbox: events are written in the transaction that ends their job.

Whoever moves a job into a terminal state (the worker, a cancel, an expiry) calls
`add_job_events` on the same connection, inside the same transaction, so an event exists
exactly when its outcome does. The dispatcher in `scheduler/` drains the pending
attempts; every try is its own `webhook_attempts` row.

An event's id is the `webhook-id` header of each of its attempts. A job reaches one
terminal state once, so `msg_` + the job's ULID names its event, and writing the same
event twice is a no-op. A batch's event (`add_batch_event`) is written the same way by
whoever ends the batch (its results writer, a failed ingest, a cancel).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, text

# Jobs of a batch fire no job events (the batch fires its own); a job's `events` list,
# when present, filters which of its terminal events are sent.
ADD_JOB_EVENTS = text(
    """
    WITH ev AS (
        INSERT INTO webhook_events (id, tenant, job_id, type, url, state, retry_until)
        SELECT 'msg_' || substr(j.id, 5), j.tenant, j.id, 'job.' || j.status,
               j.webhook ->> 'url', 'pending', now() + make_interval(secs => :window)
          FROM jobs AS j
         WHERE j.id = ANY(:ids)
           AND j.status IN ('succeeded', 'failed', 'cancelled', 'expired')
           AND j.batch_id IS NULL
           AND jsonb_typeof(j.webhook) = 'object'
           AND (jsonb_typeof(j.webhook -> 'events') IS DISTINCT FROM 'array'
                OR j.webhook -> 'events' ? ('job.' || j.status))
        ON CONFLICT (id) DO NOTHING
        RETURNING id
    )
    INSERT INTO webhook_attempts (id, event_id, attempt, state, due_at)
    SELECT 'dlv_' || replace(gen_random_uuid()::text, '-', ''), ev.id, 1, 'pending', now()
      FROM ev
    """
)


def add_job_events(conn: Connection, job_ids: Sequence[str], retry_window_s: float) -> int:
    """Queue the terminal event of each job that asked for it; returns how many were new.

    Call it in the transaction that made the jobs terminal. Jobs without a webhook,
    jobs of a batch, and events the job's `events` list leaves out are skipped.
    """
    if not job_ids:
        return 0
    result = conn.execute(ADD_JOB_EVENTS, {"ids": list(job_ids), "window": retry_window_s})
    return result.rowcount


REDELIVER = text(
    """
    WITH last AS (
        SELECT id FROM webhook_events
         WHERE job_id = :job_id
         ORDER BY created_at DESC, id DESC
         LIMIT 1
         FOR UPDATE
    ),
    reopened AS (
        UPDATE webhook_events AS e
           SET state = 'pending', retry_until = now() + make_interval(secs => :window)
          FROM last
         WHERE e.id = last.id
        RETURNING e.id
    )
    INSERT INTO webhook_attempts (id, event_id, attempt, state, due_at)
    SELECT 'dlv_' || replace(gen_random_uuid()::text, '-', ''), r.id,
           coalesce((SELECT max(attempt) FROM webhook_attempts WHERE event_id = r.id), 0) + 1,
           'pending', now()
      FROM reopened AS r
     WHERE NOT EXISTS (
           SELECT 1 FROM webhook_attempts
            WHERE event_id = r.id AND state = 'pending')
    RETURNING event_id
    """
)


def redeliver(conn: Connection, job_id: str, retry_window_s: float) -> bool:
    """Queue the job's last event again, under the same `webhook-id`.

    Returns False when the job has no event. An event that already waits for an attempt
    keeps that one; its retry window starts again either way.
    """
    row = conn.execute(
        text("SELECT 1 FROM webhook_events WHERE job_id = :job_id LIMIT 1"), {"job_id": job_id}
    ).first()
    if row is None:
        return False
    conn.execute(REDELIVER, {"job_id": job_id, "window": retry_window_s})
    return True


# A batch reaches one terminal state once, so `msg_` + the batch's ULID names its event.
ADD_BATCH_EVENT = text(
    """
    WITH ev AS (
        INSERT INTO webhook_events (id, tenant, batch_id, type, url, state, retry_until)
        SELECT 'msg_' || substr(b.id, 5), b.tenant, b.id, 'batch.' || b.status,
               b.webhook ->> 'url', 'pending', now() + make_interval(secs => :window)
          FROM batches AS b
         WHERE b.id = :id
           AND b.status IN ('completed', 'failed', 'cancelled')
           AND jsonb_typeof(b.webhook) = 'object'
           AND (jsonb_typeof(b.webhook -> 'events') IS DISTINCT FROM 'array'
                OR b.webhook -> 'events' ? ('batch.' || b.status))
        ON CONFLICT (id) DO NOTHING
        RETURNING id
    )
    INSERT INTO webhook_attempts (id, event_id, attempt, state, due_at)
    SELECT 'dlv_' || replace(gen_random_uuid()::text, '-', ''), ev.id, 1, 'pending', now()
      FROM ev
    """
)


def add_batch_event(conn: Connection, batch_id: str, retry_window_s: float) -> bool:
    """Queue the terminal event (`batch.completed`, `batch.failed`, `batch.cancelled`) of a
    batch that asked for it; returns whether it was new.

    Call it in the transaction that made the batch terminal. The body is rendered at the
    first attempt: the batch as `GET /v1/batches/{id}` returns it then.
    """
    result = conn.execute(ADD_BATCH_EVENT, {"id": batch_id, "window": retry_window_s})
    return result.rowcount > 0
