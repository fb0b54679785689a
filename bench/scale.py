"""Claim and finish per batch with an empty `jobs` table and with a long history, and the
retention of one day's partition against deleting the same rows.

    .venv/bin/python bench/scale.py [--history 10000000] [--days 30] [--drop-rows 1000000]

Everything happens in a database of its own on the configured server
(`INFERFLEET_DATABASE_URL`'s, named `<database>_scale_<hex>`), migrated to the head and
dropped at the end, so no other table or statistic is touched:

1. a backlog of `--batches` times `--batch` queued jobs is claimed and finished batch by
   batch with the worker's own `persist.claim` and `persist.finish` (as in
   `claim_plans.py`), on the empty table;
2. `--history` finished jobs (a demo-model job's inputs and outputs) are written by
   `INSERT … SELECT generate_series` into `--days` day partitions (days after the ones
   the migration made: partitions are by ID, and any day does), one day's bytes per job
   (table, indexes) are printed, ANALYZE runs, and a fresh backlog is claimed and
   finished the same way; both medians are printed, and their ratio;
3. two more days of `--drop-rows` finished jobs each: one goes as retention drops it
   (`scheduler.partitions.drop_span`: its jobs, events and attempts partitions and its
   batches, one transaction), the other by `DELETE … WHERE id` over the same range;
   both times are printed.

Generated IDs are `job_` + the day's ULID time part + 16 hex digits of a counter: the
shape and order of real ones, in that day's partition.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `bench` importable as a package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alembic.config import Config
from sqlalchemy import Engine, create_engine, make_url, text

from alembic import command
from bench.claim_plans import SCHEMA, claim_batches
from bench.workload import analyze, insert_queued, make_jobs
from inferfleet.jobs.partitions import JOBS, bound, create_day, partition_name, spans
from inferfleet.settings import load_settings
from scheduler.partitions import drop_span

ROOT = Path(__file__).resolve().parents[1]
FILL = text(
    """
    INSERT INTO jobs (id, tenant, model, version, status, lane, inputs, outputs,
                      request_id, created_at, started_at, completed_at, produced_at,
                      attempts)
    SELECT :low || lpad(to_hex(g), 16, '0'), 'bench-' || (g % 50), 'history', 1,
           'succeeded', 'interactive',
           jsonb_build_object('transaction_amount', (g % 5000) / 7.0,
                              'merchant_category', 'electronics',
                              'user_account_age_days', g % 3650, 'hour_of_day', g % 24),
           '{"label": 0, "probabilities": [0.9990488290786743, 0.0009512007236480713]}',
           'req_' || md5(g::text), :at, :at, :at, :at, 1
      FROM generate_series(1, :rows) AS g
    """
)
DAY_BYTES = text(
    "SELECT pg_relation_size(CAST(:p AS regclass)), pg_indexes_size(CAST(:p AS regclass))"
)


def fill_day(engine: Engine, day: datetime, rows: int) -> None:
    with engine.begin() as conn:
        create_day(conn, day.date())
        conn.execute(FILL, {"low": bound(JOBS.prefix, day.date()), "at": day, "rows": rows})


def claim_and_finish(engine: Engine, count: int, batch: int, run: str) -> tuple[float, float]:
    """Median claim and finish milliseconds per batch over a fresh backlog."""
    backlog = make_jobs(SCHEMA, count, seed=len(run))
    insert_queued(engine, "scale", 1, backlog, run)
    analyze(engine)
    timings = claim_batches(engine, [job.id for job in backlog], batch)
    return (
        statistics.median(c for c, _ in timings),
        statistics.median(f for _, f in timings),
    )


def drop_vs_delete(engine: Engine, first: datetime, rows: int) -> tuple[float, float]:
    """Seconds to drop one day of `rows` jobs as retention does, and to DELETE another."""
    dropped, deleted = first, first + timedelta(days=1)
    for day in (dropped, deleted):
        fill_day(engine, day, rows)
    analyze(engine)
    with engine.connect() as conn:
        span = next(s for s in spans(conn) if s.start == dropped)
    started = time.perf_counter()
    with engine.begin() as conn:
        done = drop_span(conn, span, datetime.now(UTC) + timedelta(days=3650))
    drop_s = time.perf_counter() - started
    assert done is not None, "the day to drop was held"
    low, high = (
        bound(JOBS.prefix, deleted.date()),
        bound(JOBS.prefix, (deleted + timedelta(days=1)).date()),
    )
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM jobs WHERE id >= :l AND id < :h"), {"l": low, "h": high})
    return drop_s, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=int, default=10_000_000, help="finished jobs")
    parser.add_argument("--days", type=int, default=30, help="day partitions of history")
    parser.add_argument("--batch", type=int, default=load_settings().poll_max_records)
    parser.add_argument("--batches", type=int, default=10, help="batches claimed per case")
    parser.add_argument("--drop-rows", type=int, default=1_000_000, help="rows of the day")
    args = parser.parse_args()
    base = make_url(load_settings().database_url.get_secret_value())
    name = f"{base.database}_scale_{secrets.token_hex(4)}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = base.set(database=name).render_as_string(hide_password=False)
    engine = create_engine(url, pool_size=1)
    try:
        config = Config(str(ROOT / "alembic.ini"))
        config.attributes["database_url"] = url
        command.upgrade(config, "head")
        count = args.batch * args.batches
        empty = claim_and_finish(engine, count, args.batch, "empty")
        print(f"empty table: claim {empty[0]:.1f} ms, finish {empty[1]:.1f} ms per batch")
        with engine.connect() as conn:
            after = max(s.end for s in spans(conn)) + timedelta(days=1)
        started = time.perf_counter()
        per_day = args.history // args.days
        for n in range(args.days):
            fill_day(engine, after + timedelta(days=n, hours=12), per_day)
        print(
            f"wrote {per_day * args.days:,} history rows into {args.days} day partitions "
            f"in {time.perf_counter() - started:.0f} s"
        )
        with engine.connect() as conn:
            name = partition_name("jobs", (after + timedelta(hours=12)).date())
            heap, indexes = conn.execute(DAY_BYTES, {"p": name}).one()
        print(
            f"one day of {per_day:,} finished demo-model jobs (inputs, outputs, request id): "
            f"{heap / per_day:.0f} bytes a job in the table, {indexes / per_day:.0f} in its "
            f"indexes ({(heap + indexes) / 2**20:,.0f} MiB)"
        )
        full = claim_and_finish(engine, count, args.batch, "history")
        print(f"with history: claim {full[0]:.1f} ms, finish {full[1]:.1f} ms per batch")
        print(
            f"ratio (with history / empty): claim {full[0] / empty[0]:.2f}, "
            f"finish {full[1] / empty[1]:.2f}, "
            f"claim + finish {sum(full) / sum(empty):.2f}"
        )
        first = after + timedelta(days=args.days + 1)
        drop_s, delete_s = drop_vs_delete(engine, first, args.drop_rows)
        print(
            f"one day of {args.drop_rows:,} jobs: drop its partitions {drop_s:.3f} s, "
            f"DELETE the same rows {delete_s:.3f} s ({partition_name('jobs', first.date())})"
        )
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
