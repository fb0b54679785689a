"""Sweeps: beat tasks that repair and trim what the request path leaves behind.

- `reproduce_unproduced`: a `queued` job without `produced_at` past the grace period
  lost its message to a crash between insert and produce; produce it to its lane.
- `reproduce_stale`: a `queued` job whose message was produced, that no worker claimed
  for `sweep_stale_after_intervals` sweep intervals, and whose place on its topic the
  worker group has already passed, lost its message after the produce (a worker that
  took it lost it without writing it back); produce it again.
- `expire_overdue`: `queued` jobs past their deadline end `expired`, with their events.
- `delete_old_keys`: idempotency keys older than the retention go. Jobs, their webhook
  rows and batches go by whole day partitions (`scheduler.partitions.drop_expired`).

Every sweep takes its rows with `FOR UPDATE SKIP LOCKED` in chunks, one transaction
each, so scheduler workers never take a row twice, and stops after
`sweep_interval_s` of work (the next run goes on). `scheduler.sweep_tasks` runs them as
Celery tasks and counts what they did. README.md, "Sweeps", says what each sweep does
and why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, TextClause, text

from inferfleet.clients.broker import Record
from inferfleet.clients.topics import LANES, Lane, job_topic, parse_job_topic
from inferfleet.jobs import messages
from inferfleet.jobs.outbox import add_job_events
from inferfleet.settings import Settings

log = logging.getLogger(__name__)

UNPRODUCED = text(
    """
    SELECT j.id, j.tenant, j.model, j.version, j.lane, j.inputs, j.input_uri,
           j.request_id, j.deadline, j.created_at
      FROM jobs AS j
     WHERE j.status = 'queued' AND j.produced_at IS NULL
       AND j.created_at < now() - make_interval(secs => :grace)
       AND (j.deadline IS NULL OR j.deadline > now())
       AND NOT EXISTS (SELECT 1 FROM batches AS b
                        WHERE b.id = j.batch_id AND b.status = 'validating')
     ORDER BY j.created_at
     LIMIT :limit
       FOR UPDATE OF j SKIP LOCKED
    """
)
MARK_PRODUCED = text("UPDATE jobs SET produced_at = now() WHERE id = ANY(:ids)")

# Produced, still queued, unclaimed since `after` seconds and produced before `passed`
# (`reproduce_stale`). `jobs_queued_produced` serves it: a topic's queued jobs, oldest
# first.
STALE = text(
    """
    SELECT j.id, j.tenant, j.model, j.version, j.lane, j.inputs, j.input_uri,
           j.request_id, j.deadline, j.created_at
      FROM jobs AS j
     WHERE j.status = 'queued' AND j.model = :model AND j.lane = :lane
       AND j.produced_at < least(:passed, now() - make_interval(secs => :after))
       AND (j.deadline IS NULL OR j.deadline > now())
     ORDER BY j.produced_at
     LIMIT :limit
       FOR UPDATE OF j SKIP LOCKED
    """
)
# The most two hosts' clocks may differ (a record's producer, Postgres, the sweeper).
CLOCK_SKEW_S = 30.0

EXPIRE = text(
    """
    WITH due AS (
        SELECT id FROM jobs
         WHERE status = 'queued' AND deadline <= now()
         ORDER BY deadline
         LIMIT :limit
           FOR UPDATE SKIP LOCKED
    )
    UPDATE jobs AS j
       SET status = 'expired', completed_at = now(),
           error = jsonb_build_object('type', 'expired', 'message',
                                      'the job was not started before its deadline')
      FROM due
     WHERE j.id = due.id
    RETURNING j.id
    """
)

# idempotency_keys has no index but its primary key; ctid keeps each chunk bounded.
DELETE_KEYS = text(
    """
    DELETE FROM idempotency_keys WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM idempotency_keys
         WHERE created_at < now() - make_interval(secs => :age)
         LIMIT :limit))
    """
)


class Chunks:
    """Runs chunks until one comes back short or the run's time is up."""

    def __init__(self, size: int, budget_s: float) -> None:
        self.size = size
        self._until = time.monotonic() + budget_s

    def more(self, last: int) -> bool:
        """Whether to run another chunk after one that handled `last` rows."""
        return last >= self.size and self.time_left()

    def time_left(self) -> bool:
        return time.monotonic() < self._until


def job_record(row: Any) -> Record:
    """The job's message, as the API produced it (or would have), on its lane's topic."""
    lane: Lane = row.lane if row.lane in LANES else "interactive"
    return messages.record(job_topic(row.model, lane), row._mapping)


def reproduce_unproduced(
    engine: Engine, send: Callable[[Sequence[Record]], None], settings: Settings
) -> int:
    """Produce the messages of `queued` jobs that never got one; returns how many.

    Each chunk's rows stay locked until their messages are acknowledged and
    `produced_at` is set; if Kafka does not take them, the transaction rolls back and
    the next run tries again. A crash between the acks and the commit produces those
    messages once more next time, which the worker's status guards make harmless.
    """
    chunks = Chunks(settings.sweep_chunk, settings.sweep_interval_s)
    params = {"grace": settings.sweep_unproduced_after_s, "limit": chunks.size}
    return _produce_chunks(engine, send, chunks, UNPRODUCED, params, "that were never produced")


def _produce_chunks(
    engine: Engine,
    send: Callable[[Sequence[Record]], None],
    chunks: Chunks,
    select: TextClause,
    params: Mapping[str, Any],
    why: str,
) -> int:
    """Produce the messages of the jobs `select` finds, a chunk at a time, each chunk's
    rows locked until Kafka acknowledged them and `produced_at` is set; how many."""
    total = 0
    while True:
        with engine.begin() as conn:
            rows = conn.execute(select, params).all()
            if rows:
                send([job_record(r) for r in rows])
                conn.execute(MARK_PRODUCED, {"ids": [r.id for r in rows]})
        if rows:
            log.warning("produced %d job message(s) %s (first %s)", len(rows), why, rows[0].id)
        total += len(rows)
        if not chunks.more(len(rows)):
            return total


def reproduce_stale(
    engine: Engine,
    send: Callable[[Sequence[Record]], None],
    passed: Callable[[], Mapping[str, float]],
    settings: Settings,
) -> int:
    """Produce again the messages of `queued` jobs that were produced, that no worker
    has claimed since for `sweep_stale_after_intervals` sweep intervals, and whose place
    on their topic the worker group has passed; returns how many.

    `passed()` says, per job topic the group has committed on, a time before which
    every record lies below where the group resumes on every partition
    (`inferfleet.clients.grouplag.passed_before`). A job is produced again only if its
    `produced_at` is earlier than that by more than a produce timeout (a retry or put
    back is stamped just before it is sent) and twice the clock skew allowed between
    hosts: its message was read and its offset committed, yet the job was never
    written, so no message of it is left to read. Each chunk is produced and stamped
    like `reproduce_unproduced`; a job whose message was not lost after all runs once,
    the second message finding it claimed or finished.
    """
    margin = settings.produce_timeout_s + 2 * CLOCK_SKEW_S
    after = settings.sweep_interval_s * settings.sweep_stale_after_intervals
    total = 0
    chunks = Chunks(settings.sweep_chunk, settings.sweep_interval_s)
    for topic, before in sorted(passed().items()):
        found = parse_job_topic(topic)
        if found is None:
            continue
        model, lane = found
        params = {
            "model": model,
            "lane": lane,
            "passed": datetime.fromtimestamp(before - margin, UTC),
            "after": after,
            "limit": chunks.size,
        }
        why = f"again that no worker claimed, on {topic}"
        total += _produce_chunks(engine, send, chunks, STALE, params, why)
        if not chunks.time_left():
            break
    return total


def expire_overdue(engine: Engine, settings: Settings) -> int:
    """Expire `queued` jobs past their deadline, with their events; returns how many."""
    total = 0
    chunks = Chunks(settings.sweep_chunk, settings.sweep_interval_s)
    while True:
        with engine.begin() as conn:
            ids = list(conn.execute(EXPIRE, {"limit": chunks.size}).scalars())
            add_job_events(conn, ids, settings.webhook_retry_window_s)
        total += len(ids)
        if not chunks.more(len(ids)):
            return total


def delete_old_keys(engine: Engine, settings: Settings) -> int:
    """Delete idempotency keys older than the retention; returns how many."""
    if settings.result_retention_days <= 0:
        return 0
    age = settings.result_retention_days * 86400
    chunks = Chunks(settings.sweep_chunk, settings.sweep_interval_s)
    total = 0
    while True:
        with engine.begin() as conn:
            keys = conn.execute(DELETE_KEYS, {"age": age, "limit": chunks.size}).rowcount
        total += keys
        if not chunks.more(keys):
            return total
