"""Day partitions: created ahead of time, dropped once past the retention.

`create_ahead` makes the partitions of today and the next `partition_days_ahead` days
(`inferfleet.jobs.partitions.create_day`), so new rows land in day partitions and not
in the default one.

`drop_expired` is the retention of jobs, their webhook rows and their batches. A span
(a day, or the legacy partition's range) goes once it ended more than
`result_retention_days` ago and nothing in it is kept:

- every job in it is terminal and completed before the cutoff (the `jobs_status` and
  `jobs_completed` indexes of the partition answer this, no scan), and
- every batch made in it (batch jobs carry their batch's time, so a batch's jobs are all
  in its span) is finished and completed before the cutoff.

A span that ended past the retention but keeps a straggler (a job still open, one
finished lately, a batch still running or finished lately) is held: counted in
`Dropped.held` and reported with the age of the oldest one
(`inferfleet_sweep_partitions_held`, `inferfleet_sweep_oldest_held_partition_age_seconds`)
and logged, never dropped silently. Spans go oldest first; a held span does not stop a
younger one from going.

Before the rows go, the objects the system wrote for those jobs are deleted: the claim
checks (`claims/{job_id}.json`) and large outputs (`results/{tenant}/{job_id}.json`),
found by listing those prefixes between the span's first and last job ID. Only when the
listing finds none left are the partitions dropped (attempts, events, jobs, in one
transaction under a short `lock_timeout`), with the span's batch rows; a run that runs
out of time, or an object that will not delete, leaves the span for the next run. The
other order could leave objects no row names any more.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import OperationalError

from inferfleet.jobs.claims import CLAIM_PREFIX, RESULTS_PREFIX
from inferfleet.jobs.partitions import BATCH_PREFIX, JOBS, TABLES, Span, create_day, spans
from inferfleet.settings import Settings

log = logging.getLogger(__name__)

S3_DELETE_MAX = 1000  # keys per DeleteObjects request
LOCK_TIMEOUT = "5s"  # how long a drop waits for the tables' locks before trying next run

# Why a span is kept, or None. Each test is one index probe on the span's own partition
# (`jobs_status`, `jobs_completed`) or on `batches`' primary key.
STRAGGLER = """
SELECT CASE
  WHEN EXISTS (SELECT 1 FROM {jobs} WHERE status IN ('queued', 'running'))
    THEN 'a job is not finished'
  WHEN EXISTS (SELECT 1 FROM {jobs} WHERE completed_at >= :cutoff)
    THEN 'a job finished within the retention'
  WHEN EXISTS (SELECT 1 FROM batches
                WHERE id >= :batch_low AND id < :batch_high
                  AND NOT (status IN ('completed', 'failed', 'cancelled')
                           AND completed_at < :cutoff))
    THEN 'a batch is kept'
END
"""
DELETE_BATCHES = text("DELETE FROM batches WHERE id >= :batch_low AND id < :batch_high")
DEFAULT_ROWS = "SELECT count(*) FROM {table}_default"


@dataclass
class Dropped:
    """What one retention run did and saw."""

    partitions_dropped: int = 0
    batches_deleted: int = 0
    objects_deleted: int = 0
    held: int = 0
    oldest_held_age_s: float = 0.0
    reasons: dict[str, str] = field(default_factory=dict)  # held span -> why


def create_ahead(engine: Engine, settings: Settings, today: datetime | None = None) -> int:
    """Create the day partitions of today and `partition_days_ahead` days after it
    (those missing); returns how many days were made."""
    first = (today or datetime.now(UTC)).date()
    made = 0
    for n in range(settings.partition_days_ahead + 1):
        with engine.begin() as conn:
            made += create_day(conn, first + timedelta(days=n))
    return made


def default_rows(engine: Engine) -> dict[str, int]:
    """Rows in each table's default partition: rows of days no partition covers."""
    with engine.connect() as conn:
        return {
            t.table: int(conn.execute(text(DEFAULT_ROWS.format(table=t.table))).scalar_one())
            for t in TABLES
        }


def drop_expired(
    engine: Engine, s3: Any, settings: Settings, now: datetime | None = None
) -> Dropped:
    """Drop the spans past the retention that keep nothing (module docstring)."""
    done = Dropped()
    if settings.result_retention_days <= 0:
        return done
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(days=settings.result_retention_days)
    until = time.monotonic() + settings.sweep_interval_s
    with engine.connect() as conn:
        found = [s for s in spans(conn) if s.end <= cutoff]
    for span in found:
        with engine.connect() as conn:
            why = _straggler(conn, span, cutoff)
        if why is not None:
            done.held += 1
            done.reasons[span.suffix] = why
            done.oldest_held_age_s = max(done.oldest_held_age_s, (now - span.end).total_seconds())
            log.warning(
                "retention holds partitions %s (ended %s, past the retention): %s",
                span.suffix,
                span.end.isoformat(),
                why,
            )
            continue
        if time.monotonic() >= until:
            break
        deleted, complete = _delete_objects(s3, settings.s3_bucket, span, until)
        done.objects_deleted += deleted
        if not complete:
            break
        try:
            with engine.begin() as conn:
                dropped = drop_span(conn, span, cutoff)
        except OperationalError as e:  # the lock timeout: the next run tries again
            log.warning("retention could not lock partitions %s: %s", span.suffix, e)
            continue
        if dropped is None:
            continue
        done.partitions_dropped += 1
        done.batches_deleted += dropped
        log.info("retention dropped partitions %s (ended %s)", span.suffix, span.end.isoformat())
    return done


def _batch_range(span: Span) -> dict[str, str]:
    low, high = span.key_range(BATCH_PREFIX)
    return {"batch_low": low or "", "batch_high": high}


def _straggler(conn: Connection, span: Span, cutoff: datetime) -> str | None:
    statement = text(STRAGGLER.format(jobs=span.name(JOBS.table)))
    found: str | None = conn.execute(statement, {"cutoff": cutoff, **_batch_range(span)}).scalar()
    return found


def drop_span(conn: Connection, span: Span, cutoff: datetime) -> int | None:
    """Drop the span's partitions and delete its batches; None (and nothing done) if a
    straggler appeared since it was checked or the locks were not had in time."""
    conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
    conn.execute(text(f"LOCK TABLE {span.name(JOBS.table)} IN SHARE MODE"))
    why = _straggler(conn, span, cutoff)
    if why is not None:
        log.warning("retention holds partitions %s: %s", span.suffix, why)
        return None
    for t in TABLES:
        conn.execute(text(f"DROP TABLE {span.name(t.table)}"))
    return conn.execute(DELETE_BATCHES, _batch_range(span)).rowcount


def _own_keys(s3: Any, bucket: str, span: Span) -> Iterator[str]:
    """The keys of the objects the system wrote for the span's jobs."""
    low, high = span.key_range(JOBS.prefix)
    folders = [f"{CLAIM_PREFIX}/"]
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=f"{RESULTS_PREFIX}/", Delimiter="/"
    )
    folders += [p["Prefix"] for page in pages for p in page.get("CommonPrefixes", [])]
    for folder in folders:
        start = {} if low is None else {"StartAfter": folder + low}
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=folder + JOBS.prefix, **start
        )
        for page in pages:
            for item in page.get("Contents", []):
                if item["Key"] >= folder + high:
                    break
                yield item["Key"]
            else:
                continue
            break


def _delete_objects(s3: Any, bucket: str, span: Span, until: float) -> tuple[int, bool]:
    """Delete the span's own objects; (how many, whether none is left)."""
    deleted = 0
    keys = _own_keys(s3, bucket, span)
    while True:
        part = [key for _, key in zip(range(S3_DELETE_MAX), keys, strict=False)]
        if not part:
            return deleted, True
        answer = s3.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": k} for k in part], "Quiet": True}
        )
        errors = answer.get("Errors", [])
        for e in errors:
            log.warning("cannot delete s3://%s/%s: %s", bucket, e["Key"], e.get("Message"))
        deleted += len(part) - len(errors)
        if errors or time.monotonic() >= until:
            return deleted, False
