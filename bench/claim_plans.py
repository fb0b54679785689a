"""The worker's claim under a backlog when Postgres believes `queued` rows are rare.

    .venv/bin/python bench/claim_plans.py [--history 100000] [--backlog 40000] [--batch 2000]

A production `jobs` table is mostly terminal rows, so its statistics say `queued` and
`running` are rare. psycopg prepares a statement on its 5th execution on a connection,
and Postgres switches a prepared statement to its generic plan after 5 more. For
`worker.persist.CLAIM` (`WHERE id = ANY(:ids) AND status IN ('queued', 'running')`) that
generic plan walks the `jobs_status` index over every queued row and tests each against
the whole id array (a parameter, so not hashed): per-batch cost grows with the backlog
times the batch size. Custom plans (a constant array) look the ids up by primary key.

This script builds that situation with rows of its own (`--history` terminal rows,
ANALYZE, then a `--backlog` of queued rows), claims and finishes it batch by batch with
the worker's own `persist.claim` and `persist.finish`, once per connection setting, and
prints the milliseconds per batch and the generic plan. Its rows are deleted at the end.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make `bench` importable as a package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg
from sqlalchemy import Engine, create_engine

from bench.workload import analyze, insert_queued, make_jobs
from inferfleet.settings import load_settings
from inferfleet.tables import jobs
from worker import persist
from worker.batching import Outcome

OUTPUTS = {"label": 0, "probabilities": [0.9, 0.1]}
HOLDER = "bench-claim-plans"  # the claim token a worker would write
VARIANTS: dict[str, dict[str, Any]] = {
    "as the worker connects (psycopg prepares after 5 runs)": {},
    "options=-c plan_cache_mode=force_custom_plan": {
        "options": "-c plan_cache_mode=force_custom_plan"
    },
    "prepare_threshold=None (no server-side prepare)": {"prepare_threshold": None},
}
SCHEMA = {"properties": {"merchant_category": {"enum": ["grocery", "travel"]}}}


def make_history(engine: Engine, model: str, count: int) -> None:
    """`count` succeeded rows, then ANALYZE: the statistics of a long-running system."""
    insert_queued(engine, model, 1, make_jobs(SCHEMA, count, seed=1), "history")
    with engine.begin() as conn:
        conn.execute(jobs.update().where(jobs.c.model == model).values(status="succeeded"))
    analyze(engine)


def claim_batches(engine: Engine, ids: Sequence[str], batch: int) -> list[tuple[float, float]]:
    """(claim ms, finish ms) per batch, through the worker's own persist functions."""
    timings = []
    for start in range(0, len(ids), batch):
        chunk = ids[start : start + batch]
        started = time.perf_counter()
        claimed = persist.claim(engine, chunk, token=HOLDER, retry_window_s=86400.0).taken
        claimed_at = time.perf_counter()
        persist.finish(
            engine,
            [Outcome(job_id, outputs=OUTPUTS) for job_id in claimed],
            token=HOLDER,
            retry_window_s=86400.0,
        )
        timings.append(((claimed_at - started) * 1e3, (time.perf_counter() - claimed_at) * 1e3))
    return timings


def run_variant(
    url: str, connect_args: dict[str, Any], model: str, args: argparse.Namespace, run: str
) -> list[tuple[float, float]]:
    """Queue the backlog and claim `--batches` batches of it on a fresh one-connection pool."""
    engine = create_engine(url, pool_size=1, connect_args=connect_args)
    try:
        backlog = make_jobs(SCHEMA, args.backlog, seed=2)
        insert_queued(engine, model, 1, backlog, run)
        ids = [job.id for job in backlog[: args.batch * args.batches]]
        return claim_batches(engine, ids, args.batch)
    finally:
        with engine.begin() as conn:
            conn.execute(jobs.delete().where(jobs.c.model == model, jobs.c.request_id == run))
        engine.dispose()


def print_timings(label: str, timings: list[tuple[float, float]]) -> None:
    claims = [c for c, _ in timings]
    finishes = [f for _, f in timings]
    print(f"\n{label}")
    print("  claim ms per batch: " + " ".join(f"{c:.0f}" for c in claims))
    print(
        f"  claim median {statistics.median(claims):.0f} ms, max {max(claims):.0f} ms; "
        f"finish median {statistics.median(finishes):.0f} ms, max {max(finishes):.0f} ms"
    )


def print_generic_plan(engine: Engine, model: str, args: argparse.Namespace) -> None:
    """EXPLAIN ANALYZE of CLAIM's generic plan, rolled back, on a fresh backlog."""
    backlog = make_jobs(SCHEMA, args.backlog, seed=3)
    insert_queued(engine, model, 1, backlog, "plan")
    ids = [job.id for job in backlog[: args.batch]]
    body = str(persist.CLAIM).replace(":ids", "$1").replace(":token", "$2")
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        cursor = psycopg.ClientCursor(raw)  # EXPLAIN EXECUTE takes no bound parameters
        cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        cursor.execute(f"PREPARE bench_claim(text[], text) AS {body}")
        cursor.execute("EXPLAIN (ANALYZE, COSTS) EXECUTE bench_claim(%s, %s)", [ids, HOLDER])
        plan = [row[0] for row in cursor.fetchall()]
        conn.rollback()
    print(f"\nCLAIM's generic plan, {args.backlog:,} queued rows, {args.batch:,} ids:")
    for line in plan:
        print("  " + (line if len(line) < 140 else line[:137] + "..."))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=int, default=100_000, help="terminal rows first")
    parser.add_argument("--backlog", type=int, default=40_000, help="queued rows per variant")
    parser.add_argument("--batch", type=int, default=load_settings().poll_max_records)
    parser.add_argument("--batches", type=int, default=15, help="batches claimed per variant")
    args = parser.parse_args()
    url = load_settings().database_url.get_secret_value()
    engine = create_engine(url, pool_size=1)
    model = f"bench-{secrets.token_hex(4)}"
    try:
        make_history(engine, model, args.history)
        for i, (label, connect_args) in enumerate(VARIANTS.items()):
            analyze(engine)  # back to "queued is rare" before each variant
            print_timings(label, run_variant(url, connect_args, model, args, f"variant-{i}"))
        analyze(engine)
        print_generic_plan(engine, model, args)
    finally:
        with engine.begin() as conn:
            conn.execute(jobs.delete().where(jobs.c.model == model))
        engine.dispose()


if __name__ == "__main__":
    main()
