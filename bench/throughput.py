"""Throughput of the batched worker against bare ONNX Runtime and a plain Celery worker.

    .venv/bin/python bench/throughput.py [--jobs 100000] [--batch 2000] [--celery-jobs 5000]

Needs the local stack (`scripts/stack.sh up`), a migrated database and the demo package
(`.venv/bin/python models/fraud/build.py build/models/fraud`). One run measures, on the
same fraud model and the same Postgres:

a) bare ONNX Runtime: rows/s of `session.run` alone at the worker's batch size, on feeds
   built beforehand by the model's preprocessing, with the worker's intra-op threads.
b) the worker end to end: the model is published under a fresh name (`bench-<hex>`),
   `--jobs` queued rows are COPYed into `jobs` and their messages produced to Kafka, all
   before `python -m worker` starts. Jobs/s runs from the first job's `started_at` to
   the poll (every 0.2 s) that first sees every row terminal; the database's own
   first-claim-to-last-completion rate is printed beside it, with the batch sizes from
   the worker's "batch records=..." log lines. The worker is stopped with SIGTERM.
c) plain Celery on Redis (`bench/celery_baseline.py`): one task per job that claims the
   row, runs ONNX Runtime at batch 1 and writes the outputs, timed the same way over
   `--celery-jobs` tasks enqueued before the Celery worker starts. Default: prefork with
   2 processes per core and 1 intra-op thread each, Celery's fastest configuration on a
   2-core machine (solo and 1 process per core were slower; see bench/README.md).

Before each run the bench ANALYZEs `jobs`, so the planner knows about the backlog it
just inserted (`--no-analyze` skips it; bench/claim_plans.py shows what that can cost).

Everything the run made is removed at the end (`--keep` leaves it for inspection).
Timings are for reading, never for asserting.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `bench` importable as a package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import onnxruntime as ort
import redis
from sqlalchemy import Engine

from bench import celery_baseline
from bench.worker_process import (
    WorkerRun,
    insert_backlog,
    run_worker,
    start,
    stop,
    timed,
    wait_for_jobs,
    worker_group,
)
from bench.workload import (
    Completion,
    Job,
    make_jobs,
    publish_fresh,
    remove,
    synthetic_inputs,
)
from inferfleet.clients.db import make_engine
from inferfleet.clients.objectstore import make_s3_client
from inferfleet.models.registry import ModelVersion
from inferfleet.settings import Settings, load_settings
from worker.runtime import open_model

REPO = Path(__file__).resolve().parents[1]
RUN_WORKER = "bench-worker"
RUN_CELERY = "bench-celery"
FEED_SETS = 8  # distinct pre-built batches the ORT loop cycles through


@dataclass(frozen=True)
class OrtRun:
    """Bare ONNX Runtime: rows per second of `session.run` alone."""

    rows_per_s: float
    provider: str
    calls: int


@dataclass(frozen=True)
class CeleryRun:
    """The Celery baseline over tasks already on Redis."""

    completion: Completion
    config: str
    exit_code: int


def measure_ort(
    settings: Settings, model_path: Path, version: ModelVersion, batch: int, seconds: float
) -> OrtRun:
    """Time `session.run` alone over pre-built feeds of `batch` rows for about `seconds`."""
    model = open_model(version, {f: model_path.parent / f for f in version.files}, settings)
    rows = synthetic_inputs(version.request_schema, batch * FEED_SETS, seed=0)
    feeds = [model.preprocess(rows[i : i + batch]) for i in range(0, len(rows), batch)]
    for feed in feeds:
        model.session.run(model.output_names, feed)
    calls = 0
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        model.session.run(model.output_names, feeds[calls % len(feeds)])
        calls += 1
    return OrtRun(calls * batch / elapsed, model.provider, calls)


def measure_worker(
    settings: Settings,
    engine: Engine,
    version: ModelVersion,
    count: int,
    batch: int,
    tmp: Path,
    logs: Path,
    analyze_first: bool,
) -> WorkerRun:
    """Queue `count` jobs on Kafka, then run `python -m worker` until all have ended."""
    env = {
        "INFERFLEET_MODEL_CACHE_DIR": str(tmp / "worker-cache"),
        "INFERFLEET_POLL_MAX_RECORDS": str(batch),
    }
    jobs = make_jobs(version.request_schema, count, seed=1)
    return run_worker(
        settings, engine, version, jobs, RUN_WORKER, env, logs / "worker.log", analyze_first
    )


def measure_celery(
    engine: Engine,
    version: ModelVersion,
    model_path: Path,
    count: int,
    pool: str,
    concurrency: int,
    logs: Path,
    analyze_first: bool,
) -> CeleryRun:
    """Queue `count` one-job tasks on Redis, then run a Celery worker until all have ended."""
    jobs = make_jobs(version.request_schema, count, seed=2)
    insert_backlog(engine, version, jobs, RUN_CELERY, analyze_first)
    queue = f"{version.name}-celery"
    timed(f"enqueued {count:,} Celery tasks", _enqueue, queue, jobs)
    threads = max(1, (os.cpu_count() or 1) // concurrency) if pool == "prefork" else 0
    env = {
        "BENCH_MODEL_NAME": version.name,
        "BENCH_MODEL_VERSION": str(version.version),
        "INFERFLEET_MODEL_CACHE_DIR": str(logs / "celery-cache"),
        "INFERFLEET_INTRA_OP_THREADS": str(threads),
        "PYTHONPATH": str(REPO),
    }
    command = [
        str(Path(sys.executable).with_name("celery")),
        "--app=bench.celery_baseline",
        "worker",
        f"--pool={pool}",
        f"--concurrency={concurrency}",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        f"--queues={queue}",
        "--loglevel=WARNING",
    ]
    process = start(command, os.environ | env, logs / "celery.log")
    try:
        completion = wait_for_jobs(engine, version, RUN_CELERY, count, process)
    finally:
        exit_code = stop(process)
        redis.Redis.from_url(celery_baseline.app.conf.broker_url).delete(
            queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}"
        )
    config = f"--pool={pool} --concurrency={concurrency}, intra-op threads {threads or 'default'}"
    return CeleryRun(completion, config, exit_code)


def _enqueue(queue: str, jobs: Sequence[Job]) -> None:
    with celery_baseline.app.producer_or_acquire() as producer:
        for job in jobs:
            celery_baseline.run_job.apply_async(
                (job.id, job.inputs), queue=queue, producer=producer
            )


def report(args: argparse.Namespace, a: OrtRun, b: WorkerRun, c: CeleryRun) -> str:
    """The table, the ratios and the settings behind them."""
    b_rate = b.completion.rate(args.jobs)
    c_rate = c.completion.rate(args.celery_jobs)
    busy = sum(b.batch_seconds)
    span = (b.completion.seen_done - b.completion.first_started).total_seconds()
    lines = [
        "",
        f"machine: {os.cpu_count()} cores; onnxruntime {ort.__version__} on {a.provider}; "
        f"worker intra-op threads {args.intra_op_threads or 'default (0)'}",
        "",
        f"{'':4}{'measured':58}{'rate':>16}",
        f"{'a)':4}{f'bare ONNX Runtime, session.run at batch {args.batch:,}':58}"
        f"{a.rows_per_s:>11,.0f} rows/s",
        f"{'b)':4}{f'batched worker, {args.jobs:,} jobs already on Kafka':58}"
        f"{b_rate:>11,.0f} jobs/s",
        f"{'c)':4}{f'Celery on Redis, one job per task, {args.celery_jobs:,} jobs':58}"
        f"{c_rate:>11,.0f} jobs/s",
        f"{'':4}{'b/a':58}{b_rate / a.rows_per_s:>16.4f}",
        f"{'':4}{'b/c':58}{b_rate / c_rate:>16.1f}",
        "",
        f"a) {a.calls:,} calls over pre-built feeds (the model's own preprocessing)",
        f"b) poll_max_records={args.batch}, {args.partitions} partitions; first started_at -> "
        f"poll seeing all ended {span:.2f} s; by database clock "
        f"{b.completion.db_rate(args.jobs):,.0f} jobs/s; /readyz 200 -> all ended "
        f"{b.ready_to_done_s:.2f} s; statuses {b.completion.statuses}; exit code {b.exit_code}",
        f"   {len(b.batch_sizes)} batches; records {_spread(b.batch_sizes, '.0f')}; "
        f"seconds {_spread(b.batch_seconds, '.3f')}",
        f"   sum of batch seconds {busy:.2f} s = {busy / span:.0%} of the span; the rest is "
        "poll (fetch + record parsing)",
        f"c) {c.config}; by database clock {c.completion.db_rate(args.celery_jobs):,.0f} jobs/s; "
        f"statuses {c.completion.statuses}; exit code {c.exit_code}",
    ]
    return "\n".join(lines)


def _spread(values: Sequence[float], fmt: str) -> str:
    if not values:
        return "none"
    ordered = sorted(values)
    p90 = ordered[int(0.9 * (len(ordered) - 1))]
    parts = (min(ordered), statistics.median(ordered), p90, max(ordered))
    return "min/median/p90/max " + "/".join(format(v, fmt) for v in parts)


def parse_args(settings: Settings, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options; defaults come from the worker's settings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000, help="jobs for the worker (b)")
    parser.add_argument(
        "--batch", type=int, default=settings.poll_max_records, help="batch size for a and b"
    )
    parser.add_argument("--celery-jobs", type=int, default=5_000, help="jobs for Celery (c)")
    parser.add_argument("--celery-pool", choices=["prefork", "solo"], default="prefork")
    parser.add_argument(
        "--celery-concurrency",
        type=int,
        default=2 * (os.cpu_count() or 1),
        help="prefork processes; 2 per core overlaps their database waits (Celery's best here)",
    )
    parser.add_argument("--ort-seconds", type=float, default=3.0, help="how long to time a")
    parser.add_argument("--package", type=Path, default=REPO / "build" / "models" / "fraud")
    parser.add_argument("--keep", action="store_true", help="leave the rows, topics and model")
    parser.add_argument(
        "--no-analyze",
        dest="analyze",
        action="store_false",
        help="skip ANALYZE jobs after the inserts (claim plans then depend on autoanalyze)",
    )
    parser.add_argument("--logs", type=Path, help="keep worker.log and celery.log in this folder")
    args = parser.parse_args(argv)
    if args.celery_pool == "solo":
        args.celery_concurrency = 1
    args.intra_op_threads = settings.intra_op_threads
    args.partitions = settings.topic_partitions
    return args


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="inferfleet-bench-") as tmp_name:
        tmp = Path(tmp_name)
        settings = load_settings(model_cache_dir=tmp / "publish-cache")
        args = parse_args(settings)
        engine = make_engine(settings, pool_size=2)
        s3 = make_s3_client(settings)
        version = publish_fresh(settings, engine, s3, args.package)
        model_path = args.package / "model.onnx"
        print(f"published {version.name} v{version.version}", flush=True)
        try:
            a = measure_ort(settings, model_path, version, args.batch, args.ort_seconds)
            print(f"a) {a.rows_per_s:,.0f} rows/s", flush=True)
            logs = args.logs or tmp
            logs.mkdir(parents=True, exist_ok=True)
            b = measure_worker(
                settings, engine, version, args.jobs, args.batch, tmp, logs, args.analyze
            )
            print(f"b) {b.completion.rate(args.jobs):,.0f} jobs/s", flush=True)
            c = measure_celery(
                engine,
                version,
                model_path,
                args.celery_jobs,
                args.celery_pool,
                args.celery_concurrency,
                logs,
                args.analyze,
            )
            print(f"c) {c.completion.rate(args.celery_jobs):,.0f} jobs/s", flush=True)
            print(report(args, a, b, c))
        finally:
            if args.keep:
                print(f"kept {version.name}: its job rows, registry rows, topics and S3 object")
            else:
                remove(settings, engine, s3, version, worker_group(version))
            engine.dispose()


if __name__ == "__main__":
    main()
