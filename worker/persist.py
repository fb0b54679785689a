"""The worker's writes: claim a batch of jobs, then record every outcome at once.

Both are guarded by status, so a redelivered message never rewrites a terminal job:
only `queued` or `running` jobs are claimed, and only `running` jobs take a result.
Every claim writes the worker's claim token with `running`, and every later write of
that job by a worker (its result, its requeue, giving it back after an outage) names
the token: a worker that lost the job to another (it stalled past its poll interval,
its partitions moved, and the new owner took the job) writes nothing. Jobs that end
here (a result, or an expiry) get their webhook events in the same transaction
(`inferfleet.jobs.outbox`).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, text

from inferfleet.jobs.outbox import add_job_events
from worker.batching import Outcome, bounded
from worker.isolation import CRASHED, Redelivered

# One statement claims the batch. Jobs that are `queued` become `running` under the
# worker's token; jobs whose deadline passed become `expired`. Jobs another worker left
# `running` (it died with them, or still runs them), and jobs a worker gave back while
# running them alone (`queued` with the `CRASHED` mark, `RELEASE`), are reported with
# their attempts and whether a worker died running them alone, untouched: they are
# taken one at a time (`take_alone`). Terminal, cancelled and unknown jobs are not
# touched.
CLAIM = text(
    f"""
    WITH prior AS (
        SELECT id, status, attempts, coalesce(error->>'type' = '{CRASHED}', false) AS marked,
               coalesce(deadline <= now(), false) AS late
          FROM jobs
         WHERE id = ANY(:ids) AND status IN ('queued', 'running')
    ), taken AS (
        UPDATE jobs AS j
           SET status = CASE WHEN p.late THEN 'expired' ELSE 'running' END,
               started_at = CASE WHEN p.late THEN j.started_at ELSE now() END,
               attempts = CASE WHEN p.late THEN j.attempts ELSE j.attempts + 1 END,
               completed_at = CASE WHEN p.late THEN now() END,
               produced_at = coalesce(j.produced_at, now()),
               claim_token = CASE WHEN p.late THEN j.claim_token ELSE :token END,
               error = CASE WHEN p.late
                            THEN jsonb_build_object('type', 'expired', 'message',
                                                    'the job was not started before its deadline')
                       END
          FROM prior AS p
         WHERE j.id = p.id AND ((p.status = 'queued' AND NOT p.marked) OR p.late)
           -- Checked again on the row as it is once locked: a job another worker
           -- claimed or finished meanwhile is left alone.
           AND (j.status = 'queued' OR (p.late AND j.status = 'running'))
        RETURNING j.id, j.status, j.attempts
    )
    -- Two halves, not a join: a generic plan expects one row per CTE and would nest loops.
    SELECT id, status, attempts, NULL::int AS prior_attempts, false AS alone FROM taken
    UNION ALL
    SELECT id, NULL, NULL, attempts, marked AND status = 'running' FROM prior
     WHERE NOT ((status = 'queued' AND NOT marked) OR late)
    """
)

# Takes one redelivered (or given back) job to run alone under the worker's token,
# marked so that its next redelivery shows the worker died running it
# (`worker.isolation`). A job taken only to be failed unrun counts no attempt.
TAKE_ALONE = text(
    f"""
    UPDATE jobs
       SET status = 'running', attempts = attempts + :counted, started_at = now(),
           claim_token = :token,
           error = jsonb_build_object(
               'type', '{CRASHED}', 'message',
               'running alone after its worker stopped; attempt ' || (attempts + :counted))
     WHERE id = :id
       AND (status = 'running' OR (status = 'queued' AND error->>'type' = '{CRASHED}'))
    RETURNING attempts
    """
)
# Results travel by COPY into a temporary table (one per connection, emptied at each
# commit), then one UPDATE writes them all: measured faster than binding five arrays
# to an UPDATE … FROM unnest (`bench/finish_writes.py`). `j.id = ANY(:ids)` gives the
# planner the primary-key lookup (and partition pruning) whatever it guesses of the
# temporary table, which has no statistics. The table is made by the first `finish` on
# a connection (`STAGED` in the connection's `info` says so), not asked for again.
STAGE = text(
    """
    CREATE TEMP TABLE IF NOT EXISTS finished_rows (
        id text, status text, outputs jsonb, output_uri text, error jsonb
    ) ON COMMIT DELETE ROWS
    """
)
STAGED = "inferfleet.finished_rows"
STAGE_COPY = "COPY finished_rows (id, status, outputs, output_uri, error) FROM STDIN"
FINISH = text(
    """
    UPDATE jobs AS j
       SET status = v.status, outputs = v.outputs, output_uri = v.output_uri,
           error = v.error, completed_at = now()
      FROM finished_rows AS v
     WHERE j.id = v.id AND j.id = ANY(:ids) AND j.status = 'running' AND j.claim_token = :token
    RETURNING j.id, j.webhook IS NOT NULL AND j.batch_id IS NULL AS notify
    """
)


@dataclass(frozen=True)
class Claim:
    """What a claim found: jobs taken with their attempts (this one included), jobs
    that expired instead, and jobs another worker left `running`."""

    taken: dict[str, int] = field(default_factory=dict)
    expired: set[str] = field(default_factory=set)
    redelivered: dict[str, Redelivered] = field(default_factory=dict)


def claim(engine: Engine, job_ids: Sequence[str], *, token: str, retry_window_s: float) -> Claim:
    """Mark runnable jobs `running` under `token` (one statement, with their expiries'
    webhook events).

    Jobs that are already terminal, cancelled or unknown are in no part of the answer:
    their messages are acknowledged without running them.
    """
    found = Claim()
    if not job_ids:
        return found
    with engine.begin() as conn:
        for row in conn.execute(CLAIM, {"ids": list(job_ids), "token": token}):
            if row.status == "expired":
                found.expired.add(row.id)
            elif row.status == "running":
                found.taken[row.id] = row.attempts
            else:
                found.redelivered[row.id] = Redelivered(row.prior_attempts, row.alone)
        add_job_events(conn, sorted(found.expired), retry_window_s)
    return found


def take_alone(engine: Engine, job_id: str, *, token: str, counted: bool = True) -> int | None:
    """Take one redelivered job to run alone under `token`; its attempts (this take
    included unless not `counted`), or None when it is no longer `running` (nor given
    back)."""
    with engine.begin() as conn:
        params = {"id": job_id, "token": token, "counted": int(counted)}
        attempts: int | None = conn.execute(TAKE_ALONE, params).scalar_one_or_none()
        return attempts


# A job to try again goes back to `queued`, holding no claim; `produced_at` says when its
# retry message was sent (just after this commits), so the sweep of produced jobs no
# worker claimed counts from the retry (`scheduler.sweeps`).
REQUEUE = text(
    """
    UPDATE jobs SET status = 'queued', error = NULL, claim_token = NULL, produced_at = now()
     WHERE id = ANY(:ids) AND status = 'running' AND claim_token = :token
    RETURNING id
    """
)


@dataclass(frozen=True)
class Written:
    """The jobs a `finish` wrote: those that took their result, those put back to
    `queued`. A job another claim took meanwhile is in neither."""

    finished: set[str] = field(default_factory=set)
    requeued: set[str] = field(default_factory=set)


def finish(
    engine: Engine,
    outcomes: Sequence[Outcome],
    requeued: Sequence[str] = (),
    *,
    token: str,
    retry_window_s: float,
) -> Written:
    """Write every outcome, and put `requeued` jobs back to `queued`, in one transaction,
    with the webhook events of the jobs that asked for one; only jobs still `running`
    under `token` are written.
    """
    if not outcomes and not requeued:
        return Written()
    info: dict[Any, Any] = {}
    try:
        with engine.begin() as conn:
            info = conn.connection.info
            put_back: set[str] = set()
            if requeued:
                found = conn.execute(REQUEUE, {"ids": list(requeued), "token": token})
                put_back = set(found.scalars())
            if not outcomes:
                return Written(requeued=put_back)
            _stage(conn, outcomes)
            params = {"ids": [o.job_id for o in outcomes], "token": token}
            finished = list(conn.execute(FINISH, params))
            add_job_events(conn, [r.id for r in finished if r.notify], retry_window_s)
            return Written({r.id for r in finished}, put_back)
    except BaseException:
        # The table's creation, if this transaction made it, was rolled back with it.
        info.pop(STAGED, None)
        raise


def _stage(conn: Connection, outcomes: Sequence[Outcome]) -> None:
    """COPY the outcomes into this transaction's `finished_rows` (made first if this
    connection has not made it yet)."""
    if not conn.connection.info.get(STAGED):
        conn.execute(STAGE)
        conn.connection.info[STAGED] = True
    raw = conn.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cursor, cursor.copy(STAGE_COPY) as copy:
        for o in outcomes:
            outputs, error = _encode(o)
            status = "succeeded" if error is None else "failed"
            copy.write_row((o.job_id, status, outputs, o.output_uri, error))


# Gives back the jobs a worker holds when their batch failed for an outage: `queued`
# again, with the attempt their claim counted taken back, so an outage costs no job an
# attempt. A job held alone keeps its `CRASHED` mark (running alone, not died), so the
# next claim runs it alone again (`CLAIM`).
RELEASE = text(
    """
    UPDATE jobs SET status = 'queued', claim_token = NULL, attempts = greatest(attempts - 1, 0)
     WHERE id = ANY(:ids) AND status = 'running' AND claim_token = :token
    """
)


def release(engine: Engine, job_ids: Collection[str], *, token: str) -> int:
    """Give back those of `job_ids` still `running` under `token`; how many."""
    if not job_ids:
        return 0
    with engine.begin() as conn:
        return conn.execute(RELEASE, {"ids": sorted(job_ids), "token": token}).rowcount


def _encode(outcome: Outcome) -> tuple[str | None, str | None]:
    """(outputs JSON, error JSON) of one outcome; outputs that JSON cannot hold fail the job.

    Nothing here raises for one outcome: a failure would fail the whole transaction.
    """
    if outcome.error is not None:
        return None, json.dumps(bounded(outcome.error))
    if outcome.outputs is None:  # stored in S3, named by output_uri
        return None, None
    try:
        return json.dumps(outcome.outputs, allow_nan=False), None
    except ValueError:
        error = {"type": "invalid_output", "message": "the model produced NaN or infinity"}
    except Exception as e:  # noqa: BLE001 - outputs JSON cannot hold fail their job alone
        message = f"the outputs cannot be encoded as JSON: {type(e).__name__}: {e}"
        error = {"type": "invalid_output", "message": message}
    return None, json.dumps(bounded(error))


# Jobs waiting for their version are put back at the end of their topic; their
# `produced_at` moves to now, as a retry's does (`REQUEUE`). Rows someone holds locked
# are skipped, as `inferfleet.jobs.produced` does, rather than waited on.
UNFINISHED = text(
    """
    WITH stamped AS (
        UPDATE jobs SET produced_at = now()
         WHERE id IN (SELECT id FROM jobs
                       WHERE id = ANY(:ids) AND status = 'queued'
                         FOR UPDATE SKIP LOCKED)
    )
    SELECT id FROM jobs WHERE id = ANY(:ids) AND status IN ('queued', 'running')
    """
)


def unfinished(engine: Engine, job_ids: Sequence[str]) -> set[str]:
    """Which of `job_ids` are still `queued` or `running` (the others need no message);
    the queued ones are stamped as produced now, since their message is sent again."""
    if not job_ids:
        return set()
    with engine.begin() as conn:
        return {r.id for r in conn.execute(UNFINISHED, {"ids": list(job_ids)})}
