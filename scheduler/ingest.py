"""Batch ingest: read a `validating` batch's file, validate every line, make its jobs.

Whoever made the batch (`POST /v1/batches`, a schedule's firing, a resubmission), it
waits as a `validating` row. Beat starts `inferfleet.ingest_batches` every
`INFERFLEET_BATCH_POLL_S`; each run takes the oldest such batch whose lease is free
(`scheduler.lease`: `FOR UPDATE SKIP LOCKED`, then `lease_until` and an owner token),
so any number of scheduler processes share the work and never ingest one batch twice at
once. Every write of the ingest is made under its token; its long steps (the download
and validation, a resubmission's input, the claim-checked inputs and produces of pass 2)
run with a heartbeat renewing the lease. An ingest that crashes frees the batch for the
next run after `INFERFLEET_BATCH_LEASE_S`; one that finds its token taken over raises
`LeaseLostError` and writes nothing more.

Two passes, neither holding the file:

1. Stream the S3 object (Parquet, which needs its footer, is downloaded to a temporary
   file first), parse and validate every line, spool the valid ones to a temporary
   file and keep the first `INFERFLEET_BATCH_MAX_INVALID_LINES` invalid ones. Invalid
   lines without `skip_invalid`, or a file that cannot be read, fail the batch with
   nothing enqueued.
2. Read the spool back in chunks of `INFERFLEET_BATCH_CHUNK_ROWS`: insert the chunk's
   jobs (lane `batch`), produce their messages on the model's batch topic, and set
   `produced_at` once Kafka acknowledged them. Then the batch is `queued`.

Running again after a crash makes no duplicate: a job's ID is derived from (batch,
line) (`inferfleet.ids.batch_job_id`), a chunk inserts only the jobs not there yet, and
only jobs still without `produced_at` are produced (`scheduler.enqueue`). The one repeat
left is a chunk whose messages landed but whose `produced_at` write did not: those
messages are produced twice, and the worker's status guards make the second a no-op.

A cancel (`POST /v1/batches/{id}/cancel`) takes the batch row's lock, which each chunk
holds while it inserts, so it cancels every job inserted so far; the ingest sees the
batch no longer `validating` at its next lease renewal and stops.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from botocore.exceptions import ClientError
from celery import Celery
from kafka import KafkaProducer
from sqlalchemy import Engine, func

from inferfleet import tracing
from inferfleet.clients.broker import make_producer
from inferfleet.clients.objectstore import exists, split_uri
from inferfleet.clients.outages import OUTAGES
from inferfleet.clients.topics import ensure_topics, job_topic
from inferfleet.errors import FieldError, NotFoundError
from inferfleet.jobs.outbox import add_batch_event
from inferfleet.models import registry
from inferfleet.models.registry import ModelVersion
from inferfleet.models.validation import request_validator
from inferfleet.settings import Settings
from inferfleet.tables import batches
from scheduler.batchfiles import (
    BatchFileError,
    Format,
    Line,
    check,
    csv_lines,
    file_format,
    invalid_entry,
    jsonl_lines,
    parquet_lines,
    split_lines,
)
from scheduler.enqueue import insert_new, job_rows, produce
from scheduler.lease import RELEASED, BatchEndedError, Lease, LeaseLostError, take_oldest
from scheduler.results import finish_batches, write_resubmit_input

log = logging.getLogger(__name__)
TRACER = tracing.tracer(__name__)

INGEST_TASK = "inferfleet.ingest_batches"
FINISH_TASK = "inferfleet.finish_batches"
READ_CHUNK = 1024 * 1024
# S3 error codes that no retry will change: the batch fails instead.
PERMANENT_S3_ERRORS = frozenset(
    {"NoSuchKey", "NoSuchBucket", "404", "NotFound", "AccessDenied", "403", "InvalidObjectState"}
)

# The status an ingest works in: a cancel moves the batch out of it.
VALIDATING = ("validating",)


@dataclass
class Report:
    """What validation found: lines read, invalid ones, and the entries kept of them."""

    lines: int = 0
    invalid: int = 0
    kept: list[dict[str, Any]] = field(default_factory=list)


class Ingest:
    """The ingest of one claimed batch; `run` returns how it ended."""

    def __init__(
        self,
        engine: Engine,
        s3: Any,
        producer: Callable[[], KafkaProducer],
        settings: Settings,
        batch: Any,
        lease: Lease,
    ) -> None:
        self.engine = engine
        self.s3 = s3
        self.producer = producer
        self.settings = settings
        self.batch = batch
        self.lease = lease

    def run(self) -> str:
        """`queued` or `failed`. BatchEndedError when a cancel ended the batch meanwhile,
        LeaseLostError when another process took it over; transient failures (S3, Kafka
        or Postgres unavailable) raise, and the batch is taken up again once its lease
        runs out."""
        batch = self.batch
        try:
            with self.engine.connect() as conn:
                version = registry.resolve(conn, batch.model, batch.version)
        except NotFoundError as e:
            return self.fail("model_not_found", f"{e}; nothing was enqueued")
        fmt = file_format(batch.input_uri)
        if fmt is None:
            return self.fail(
                "input_unreadable",
                f"{batch.input_uri} does not end in .jsonl, .ndjson, .csv or .parquet",
                version,
            )
        if batch.resubmitted_from is not None and not exists(self.s3, batch.input_uri):
            with self.lease.heartbeat():
                write_resubmit_input(self.engine, self.s3, batch.resubmitted_from, batch.input_uri)
        with tempfile.TemporaryFile() as spool:
            try:
                with self.lease.heartbeat():
                    report = self.validate(fmt, version, spool)
            except ClientError as e:
                code = str(e.response.get("Error", {}).get("Code"))
                if code not in PERMANENT_S3_ERRORS:
                    raise
                message = f"{batch.input_uri} cannot be read ({code}); nothing was enqueued"
                return self.fail("input_unavailable", message, version)
            except BatchFileError as e:
                message = f"{batch.input_uri}: {e}; nothing was enqueued"
                return self.fail("input_unreadable", message, version)
            except (BatchEndedError, LeaseLostError):
                raise
            except OUTAGES:
                raise
            except Exception as e:  # never a batch left `validating` for ever
                log.exception("batch %s: reading its file failed", batch.id)
                message = (
                    f"{batch.input_uri} cannot be read: {type(e).__name__}: {e}; "
                    "nothing was enqueued"
                )
                return self.fail("input_unreadable", message, version)
            if report.invalid and not batch.skip_invalid:
                return self.fail("invalid_lines", _invalid_message(report), version, report)
            self.record(version, report)
            spool.seek(0)
            with self.lease.heartbeat():
                self.enqueue(version, spool)
        with self.lease.transaction() as conn:
            conn.execute(
                batches.update().where(batches.c.id == batch.id).values(status="queued", **RELEASED)
            )
        return "queued"

    def lines(self, fmt: Format, version: ModelVersion) -> Iterator[Line]:
        """The file's lines, streamed from S3."""
        bucket, key = split_uri(self.batch.input_uri)
        if fmt == "parquet":
            with tempfile.NamedTemporaryFile(suffix=".parquet") as local:
                self.s3.download_fileobj(bucket, key, local)
                local.flush()
                yield from parquet_lines(Path(local.name))
            return
        body = self.s3.get_object(Bucket=bucket, Key=key)["Body"]
        try:
            raw = split_lines(body.iter_chunks(READ_CHUNK), self.settings.max_body_bytes)
            if fmt == "jsonl":
                yield from jsonl_lines(raw)
            else:
                yield from csv_lines(raw, version.request_schema, self.settings.max_body_bytes)
        finally:
            body.close()

    def validate(self, fmt: Format, version: ModelVersion, spool: IO[bytes]) -> Report:
        """Pass 1: every line checked; valid ones spooled as `[line, custom_id, inputs]`."""
        validator = request_validator(version)
        keep = self.settings.batch_max_invalid_lines
        report = Report()
        for line in self.lines(fmt, version):
            report.lines = line.number
            errors = check(line, validator)
            if not errors:
                try:
                    spooled = [line.number, line.custom_id, line.inputs]
                    spool.write(json.dumps(spooled, separators=(",", ":")).encode() + b"\n")
                except (TypeError, ValueError, RecursionError) as e:
                    msg = f"the inputs cannot be written as JSON: {type(e).__name__}: {e}"
                    errors = [FieldError(("inputs",), msg, "line_unreadable", None)]
            if errors:
                report.invalid += 1
                if len(report.kept) < keep:
                    report.kept.append(invalid_entry(line, errors))
            self.lease.check()
        return report

    def record(self, version: ModelVersion, report: Report) -> None:
        """Store what validation found: the resolved version, the lines, the invalid ones."""
        with self.lease.transaction() as conn:
            conn.execute(
                batches.update()
                .where(batches.c.id == self.batch.id)
                .values(version=str(version.version), total=report.lines, invalid_lines=report.kept)
            )

    def enqueue(self, version: ModelVersion, spool: IO[bytes]) -> None:
        """Pass 2: the spooled lines as jobs, a chunk at a time, each produced to Kafka.
        Run it under the lease's heartbeat: claim-checked inputs and produces write
        nothing to the batch for as long as S3 and Kafka take."""
        topic = job_topic(version.name, "batch")
        settings = self.settings
        ensure_topics(
            settings,
            [topic],
            settings.topic_partitions,
            settings.topic_replication,
            timeout_ms=int(settings.produce_timeout_s * 1000),
        )
        producer = self.producer()
        chunk: list[bytes] = []
        for spooled in spool:
            chunk.append(spooled)
            if len(chunk) >= self.settings.batch_chunk_rows:
                self.enqueue_chunk(version, topic, producer, chunk)
                chunk = []
        if chunk:
            self.enqueue_chunk(version, topic, producer, chunk)

    def enqueue_chunk(
        self, version: ModelVersion, topic: str, producer: KafkaProducer, chunk: list[bytes]
    ) -> None:
        now = datetime.now(UTC)
        rows = job_rows(self.batch, version, chunk, now, self.s3, self.settings)
        with self.lease.transaction() as conn:
            # The lease renewal locks the batch row until this transaction ends: no other
            # ingest of this batch inserts meanwhile, and a cancel waits for these rows.
            todo = insert_new(conn, rows)
        produce(self.lease.transaction, producer, topic, todo, self.settings)

    def fail(
        self,
        kind: str,
        message: str,
        version: ModelVersion | None = None,
        report: Report | None = None,
    ) -> str:
        """End the batch `failed` and queue `batch.failed` (BatchEndedError when it was
        cancelled meanwhile)."""
        values: dict[str, Any] = {
            "status": "failed",
            "error": {"type": kind, "message": message},
            "completed_at": func.now(),
            **RELEASED,
        }
        if version is not None:
            values["version"] = str(version.version)
        if report is not None:
            values.update(total=report.lines, invalid_lines=report.kept)
        with self.lease.transaction() as conn:
            conn.execute(batches.update().where(batches.c.id == self.batch.id).values(**values))
            add_batch_event(conn, self.batch.id, self.settings.webhook_retry_window_s)
        log.warning("batch %s failed: %s", self.batch.id, message)
        return "failed"


def _invalid_message(report: Report) -> str:
    listed = "" if len(report.kept) == report.invalid else f" (the first {len(report.kept)} listed)"
    return (
        f"{report.invalid} of {report.lines} lines are invalid{listed}; nothing was enqueued. "
        "Fix them, or submit the batch again with skip_invalid to run the valid lines"
    )


def ingest_next(engine: Engine, s3: Any, settings: Settings) -> str | None:
    """Ingest the oldest `validating` batch whose lease is free; how it ended, or None
    when there was none. LeaseLostError when another process took the batch over."""
    held = take_oldest(engine, VALIDATING, settings.batch_lease_s)
    if held is None:
        return None
    batch, lease = held
    made: list[KafkaProducer] = []

    def producer() -> KafkaProducer:
        if not made:
            made.append(make_producer(settings, client_id="inferfleet-batches"))
        return made[0]

    started = time.monotonic()
    # Every job of the batch carries this span's context (`enqueue.job_rows`).
    attributes = {"inferfleet.batch_id": batch.id, "inferfleet.model": batch.model}
    try:
        with TRACER.start_as_current_span("inferfleet.batch.ingest", attributes=attributes):
            outcome = Ingest(engine, s3, producer, settings, batch, lease).run()
    except BatchEndedError:
        outcome = "cancelled"
    finally:
        for p in made:
            p.close(timeout=5)
    log.info("batch %s ingested: %s seconds=%.1f", batch.id, outcome, time.monotonic() - started)
    return outcome


def register(
    app: Celery, settings: Settings, engine: Callable[[], Engine], s3: Callable[[], Any]
) -> None:
    """Add the batch tasks and their beat entries to `app`: `inferfleet.ingest_batches`
    (one batch per run) and `inferfleet.finish_batches` (results of batches whose jobs
    all ended), both every `INFERFLEET_BATCH_POLL_S`.

    An ingest keeps its worker process for as long as the file takes; runs that beat
    starts meanwhile go to the other processes or expire. `engine` and `s3` give the
    calling process's clients (made after the fork).
    """

    @app.task(name=INGEST_TASK)  # type: ignore[untyped-decorator]
    def ingest_batches() -> str | None:
        return ingest_next(engine(), s3(), settings)

    @app.task(name=FINISH_TASK)  # type: ignore[untyped-decorator]
    def finish() -> int:
        return finish_batches(engine(), s3(), settings)

    every = {
        "schedule": settings.batch_poll_s,
        "options": {"expires": max(1.0, 2 * settings.batch_poll_s)},
    }
    app.conf.beat_schedule = {
        **app.conf.beat_schedule,
        "ingest-batches": {"task": INGEST_TASK, **every},
        "finish-batches": {"task": FINISH_TASK, **every},
    }
