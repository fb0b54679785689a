"""Files written from a batch's jobs: its results when they have all ended, and the
input of a resubmission of its failed lines.

`finish_batches` (beat, every `INFERFLEET_BATCH_POLL_S`) counts the jobs of every
`queued` or `running` batch (`GROUP BY status`). A batch with jobs under way is marked
`running` once one has been taken. A batch whose jobs have all ended is leased like an
ingest, its `results.jsonl` is written under its output prefix, and one transaction sets
`output_uri`, `completed` and `completed_at` and queues `batch.completed`. A writer that
crashes leaves no results file (a multipart upload appears only when completed) and the
batch to the next run once its lease runs out; writing twice gives the same file, and
only the first completion queues the event.

Both files stream: job rows come from a server-side cursor in line order
(`yield_per`), lines go to S3 through a multipart upload as they are rendered.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import Engine, select, text

from inferfleet.batches.view import job_counts, shown_status, unfinished
from inferfleet.clients.objectstore import split_uri
from inferfleet.jobs.outbox import add_batch_event
from inferfleet.settings import Settings
from inferfleet.tables import jobs
from scheduler.batchresults import results_lines, results_uri, upload_lines

log = logging.getLogger(__name__)

JSONL = "application/x-ndjson"
YIELD_ROWS = 2000
# The results writer renews its lease every this many lines.
RENEW_ROWS = 50_000
# Batches looked at per run; the oldest first.
SCAN_LIMIT = 100

ACTIVE = text(
    """
    SELECT id, status FROM batches
     WHERE status IN ('queued', 'running')
       AND (lease_until IS NULL OR lease_until < now())
     ORDER BY created_at
     LIMIT :limit
    """
)
LEASE = text(
    """
    UPDATE batches SET lease_until = now() + make_interval(secs => :lease)
     WHERE id = :id AND status IN ('queued', 'running')
       AND (lease_until IS NULL OR lease_until < now() OR :renew)
    RETURNING *
    """
)
RUNNING = text("UPDATE batches SET status = 'running' WHERE id = :id AND status = 'queued'")
COMPLETE = text(
    """
    UPDATE batches
       SET status = 'completed', output_uri = :uri, completed_at = now(), lease_until = NULL
     WHERE id = :id AND status IN ('queued', 'running')
    RETURNING id
    """
)


def finish_batches(engine: Engine, s3: Any, settings: Settings) -> int:
    """One pass: mark started batches `running`, complete those whose jobs all ended;
    returns how many were completed."""
    with engine.begin() as conn:
        active = list(conn.execute(ACTIVE, {"limit": SCAN_LIMIT}))
        counts = job_counts(conn, [b.id for b in active])
        for b in active:
            if b.status == "queued" and shown_status(b.status, counts.get(b.id, {})) == "running":
                conn.execute(RUNNING, {"id": b.id})
    completed = 0
    for b in active:
        if not unfinished(counts.get(b.id, {})) and complete(engine, s3, settings, b.id):
            completed += 1
    return completed


def complete(engine: Engine, s3: Any, settings: Settings, batch_id: str) -> bool:
    """Write the results of a batch whose jobs all ended and complete it; False when
    another process holds it or it ended otherwise (a cancel) meanwhile."""
    with engine.begin() as conn:
        params = {"id": batch_id, "lease": settings.batch_lease_s, "renew": False}
        batch = conn.execute(LEASE, params).one_or_none()
    if batch is None:
        return False
    started = time.monotonic()
    uri = results_uri(batch.output_prefix)
    write_results(engine, s3, settings, batch, uri)
    with engine.begin() as conn:
        if conn.execute(COMPLETE, {"id": batch_id, "uri": uri}).one_or_none() is None:
            return False
        add_batch_event(conn, batch_id, settings.webhook_retry_window_s)
    log.info(
        "batch %s completed: %d lines to %s seconds=%.1f",
        batch_id,
        batch.total,
        uri,
        time.monotonic() - started,
    )
    return True


def write_results(engine: Engine, s3: Any, settings: Settings, batch: Any, uri: str) -> None:
    """Stream the batch's `results.jsonl` to `uri`, renewing the lease as it goes."""
    query = (
        select(
            jobs.c.line,
            jobs.c.id,
            jobs.c.custom_id,
            jobs.c.status,
            jobs.c.outputs,
            jobs.c.output_uri,
            jobs.c.error,
        )
        .where(jobs.c.batch_id == batch.id)
        .order_by(jobs.c.line)
    )
    invalid = {entry["line"]: entry for entry in batch.invalid_lines}

    def renewing(rows: Iterable[Any]) -> Iterator[Any]:
        for n, row in enumerate(rows, 1):
            if n % RENEW_ROWS == 0:
                with engine.begin() as conn:
                    params = {"id": batch.id, "lease": settings.batch_lease_s, "renew": True}
                    conn.execute(LEASE, params)
            yield row

    with engine.connect() as conn:
        rows = conn.execution_options(yield_per=YIELD_ROWS).execute(query)
        upload_lines(s3, uri, results_lines(batch.total, renewing(rows), invalid), JSONL)


def write_resubmit_input(engine: Engine, s3: Any, batch_id: str, uri: str) -> int:
    """Write the failed and expired lines of `batch_id`, in line order, as a JSONL batch
    input (`{"custom_id", "inputs"}`) at `uri`; returns how many."""
    query = (
        select(jobs.c.custom_id, jobs.c.inputs, jobs.c.input_uri)
        .where(jobs.c.batch_id == batch_id, jobs.c.status.in_(("failed", "expired")))
        .order_by(jobs.c.line)
    )
    written = 0

    def lines(rows: Iterable[Any]) -> Iterator[bytes]:
        nonlocal written
        for row in rows:
            inputs = row.inputs
            if inputs is None and row.input_uri is not None:  # claim-checked
                bucket, key = split_uri(row.input_uri)
                inputs = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            written += 1
            line = {"custom_id": row.custom_id, "inputs": inputs}
            yield json.dumps(line, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"

    with engine.connect() as conn:
        rows = conn.execution_options(yield_per=YIELD_ROWS).execute(query)
        upload_lines(s3, uri, lines(rows), JSONL)
    log.info("wrote %d failed or expired lines of batch %s to %s", written, batch_id, uri)
    return written
