"""Files written from a batch's jobs: its results when they have all ended, and the
input of a resubmission of its failed lines.

`finish_batches` (beat, every `INFERFLEET_BATCH_POLL_S`) counts the jobs of every
`queued` or `running` batch (`GROUP BY status`). A batch with jobs under way is marked
`running` once one has been taken. A batch whose jobs have all ended is leased like an
ingest (`scheduler.lease`), its `results.jsonl` is written under its output prefix with
the lease's heartbeat running, and one transaction under the lease's token sets
`output_uri`, `completed` and `completed_at` and queues `batch.completed`. A writer that
crashes leaves no results file (a multipart upload appears only when completed) and the
batch to the next run once its lease runs out; one that finds its token taken over
stops the upload (its lines stop) and raises `LeaseLostError` without completing the
batch. Writing twice gives the same file, and only the holder completes it.

Both files stream: job rows come from a server-side cursor in line order
(`yield_per`), lines go to S3 through a multipart upload as they are rendered.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import Engine, func, select, text

from inferfleet.batches.view import job_counts, shown_status, unfinished
from inferfleet.clients.objectstore import split_uri
from inferfleet.jobs.outbox import add_batch_event
from inferfleet.settings import Settings
from inferfleet.tables import batches, jobs
from scheduler.batchresults import results_lines, results_uri, upload_lines
from scheduler.lease import FREE, RELEASED, BatchEndedError, Lease, take

log = logging.getLogger(__name__)

JSONL = "application/x-ndjson"
YIELD_ROWS = 2000
# Batches looked at per run; the oldest first.
SCAN_LIMIT = 100
# The statuses a results writer works in: a cancel moves the batch out of them.
UNDER_WAY = ("queued", "running")

ACTIVE = text(
    f"""
    SELECT id, status FROM batches
     WHERE status = ANY(:statuses) AND {FREE}
     ORDER BY created_at
     LIMIT :limit
    """
)
RUNNING = text("UPDATE batches SET status = 'running' WHERE id = :id AND status = 'queued'")


def finish_batches(engine: Engine, s3: Any, settings: Settings) -> int:
    """One pass: mark started batches `running`, complete those whose jobs all ended;
    returns how many were completed."""
    with engine.begin() as conn:
        active = list(conn.execute(ACTIVE, {"statuses": list(UNDER_WAY), "limit": SCAN_LIMIT}))
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
    another process holds it or it ended otherwise (a cancel) meanwhile, LeaseLostError
    when another process took it over while this one wrote."""
    held = take(engine, batch_id, UNDER_WAY, settings.batch_lease_s)
    if held is None:
        return False
    batch, lease = held
    started = time.monotonic()
    uri = results_uri(batch.output_prefix)
    try:
        with lease.heartbeat():
            write_results(engine, s3, batch, uri, lease)
        with lease.transaction() as conn:
            conn.execute(
                batches.update()
                .where(batches.c.id == batch_id)
                .values(status="completed", output_uri=uri, completed_at=func.now(), **RELEASED)
            )
            add_batch_event(conn, batch_id, settings.webhook_retry_window_s)
    except BatchEndedError:
        return False
    log.info(
        "batch %s completed: %d lines to %s seconds=%.1f",
        batch_id,
        batch.total,
        uri,
        time.monotonic() - started,
    )
    return True


def write_results(engine: Engine, s3: Any, batch: Any, uri: str, lease: Lease) -> None:
    """Stream the batch's `results.jsonl` to `uri`; run it under the lease's heartbeat.
    A lease lost meanwhile stops the lines, and so the upload, which S3 then drops."""
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

    def held(rows: Iterable[Any]) -> Iterator[Any]:
        for row in rows:
            lease.check()
            yield row

    with engine.connect() as conn:
        rows = conn.execution_options(yield_per=YIELD_ROWS).execute(query)
        upload_lines(s3, uri, results_lines(batch.total, held(rows), invalid), JSONL)


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
