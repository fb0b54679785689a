"""The worker end to end against the worker of an earlier commit, on the same backlog.

    .venv/bin/python bench/pipeline.py [--jobs 100000] [--rounds 2] [--celery-jobs 5000]
        [--base-worktree /tmp/inferfleet-base] [--base-commit 82c18d1]

Needs the local stack (`scripts/stack.sh up`), a migrated database and the demo package
(`.venv/bin/python models/fraud/build.py build/models/fraud`). The earlier worker runs
from a checkout of `--base-commit` at `--base-worktree` (made with `git worktree add
--detach` when it is not there; by default the commit before the pipelined worker).

Each round runs both workers in turn, the earlier one first in odd rounds and second in
even ones: each gets a model published under a fresh name (`bench-<hex>`), `--jobs`
queued rows COPYed into `jobs` and their messages produced to Kafka before
`python -m worker` starts from its checkout, timed as `bench/throughput.py` times its
worker (first `started_at` to the poll that sees every row terminal; the database's own
first-claim-to-last-completion rate beside it). Then, unless `--celery-jobs 0`, the
Celery peer of `bench/throughput.py` (one task per job) on the same Postgres. It prints
jobs/s of each run, the median of each worker, and their ratio.

Everything the run made is removed at the end. Timings are for reading, never for
asserting.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `bench` importable as a package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import Engine

from bench.throughput import measure_celery
from bench.worker_process import WorkerRun, run_worker, worker_group
from bench.workload import make_jobs, publish_fresh, remove
from inferfleet.clients.db import make_engine
from inferfleet.clients.objectstore import make_s3_client
from inferfleet.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]
BASE_COMMIT = "82c18d1"  # the worker before the pipeline
RUN = "bench-pipeline"


@dataclass(frozen=True)
class Measured:
    """One worker's run over the backlog."""

    worker: str  # "this" or "base"
    run: WorkerRun
    jobs: int

    @property
    def rate(self) -> float:
        return self.run.completion.rate(self.jobs)


def base_checkout(path: Path, commit: str) -> Path:
    """A checkout of `commit` at `path`, made with `git worktree add` if missing."""
    if not (path / "worker" / "main.py").exists():
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(path), commit], cwd=REPO, check=True
        )
    return path


def measure(
    settings: Settings,
    engine: Engine,
    s3: object,
    args: argparse.Namespace,
    which: str,
    repo: Path,
    logs: Path,
    tag: str,
) -> Measured:
    """Publish a fresh model, queue the backlog and run the worker of `repo` over it."""
    version = publish_fresh(settings, engine, s3, args.package)
    try:
        env = {
            "INFERFLEET_MODEL_CACHE_DIR": str(logs / f"cache-{tag}"),
            "INFERFLEET_POLL_MAX_RECORDS": str(args.batch),
        }
        jobs = make_jobs(version.request_schema, args.jobs, seed=1)
        run = run_worker(
            settings, engine, version, jobs, RUN, env, logs / f"worker-{tag}.log", True, repo
        )
        measured = Measured(which, run, args.jobs)
        print(f"{tag}: {measured.rate:,.0f} jobs/s", flush=True)
        return measured
    finally:
        remove(settings, engine, s3, version, worker_group(version))


def report(args: argparse.Namespace, runs: Sequence[Measured], celery: float | None) -> str:
    lines = ["", f"{'run':10}{'worker':8}{'jobs/s':>12}{'db jobs/s':>12}{'batches':>9}"]
    for i, m in enumerate(runs):
        lines.append(
            f"{i + 1:<10}{m.worker:8}{m.rate:>12,.0f}"
            f"{m.run.completion.db_rate(m.jobs):>12,.0f}{len(m.run.batch_sizes):>9}"
        )
    this = statistics.median(m.rate for m in runs if m.worker == "this")
    base = statistics.median(m.rate for m in runs if m.worker == "base")
    lines += [
        "",
        f"worker end to end, {args.jobs:,} jobs already on Kafka, poll {args.batch}: "
        f"this {this:,.0f} jobs/s, base ({args.base_commit}) {base:,.0f} jobs/s, "
        f"ratio {this / base:.2f}",
    ]
    if celery is not None:
        lines.append(
            f"Celery on Redis, one job per task, {args.celery_jobs:,} jobs: {celery:,.0f} "
            f"jobs/s; this worker / Celery {this / celery:.1f}"
        )
    return "\n".join(lines)


def parse_args(settings: Settings, argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000, help="jobs per worker run")
    parser.add_argument("--batch", type=int, default=settings.poll_max_records)
    parser.add_argument("--rounds", type=int, default=2, help="runs of each worker")
    parser.add_argument("--celery-jobs", type=int, default=5_000, help="0: no Celery run")
    parser.add_argument(
        "--base-worktree", type=Path, default=Path(tempfile.gettempdir()) / "inferfleet-base"
    )
    parser.add_argument("--base-commit", default=BASE_COMMIT)
    parser.add_argument("--package", type=Path, default=REPO / "build" / "models" / "fraud")
    parser.add_argument("--logs", type=Path, help="keep the workers' logs in this folder")
    return parser.parse_args(argv)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="inferfleet-bench-") as tmp_name:
        settings = load_settings(model_cache_dir=Path(tmp_name) / "publish-cache")
        args = parse_args(settings)
        logs = args.logs or Path(tmp_name)
        logs.mkdir(parents=True, exist_ok=True)
        base = base_checkout(args.base_worktree, args.base_commit)
        engine = make_engine(settings, pool_size=2)
        s3 = make_s3_client(settings)
        try:
            runs: list[Measured] = []
            for r in range(args.rounds):
                order = [("base", base), ("this", REPO)]
                for which, repo in order if r % 2 == 0 else order[::-1]:
                    tag = f"{which}-{r + 1}"
                    runs.append(measure(settings, engine, s3, args, which, repo, logs, tag))
            celery = None
            if args.celery_jobs:
                version = publish_fresh(settings, engine, s3, args.package)
                try:
                    c = measure_celery(
                        engine,
                        version,
                        args.package / "model.onnx",
                        args.celery_jobs,
                        "prefork",
                        2 * (os.cpu_count() or 1),
                        logs,
                        True,
                    )
                    celery = c.completion.rate(args.celery_jobs)
                finally:
                    remove(settings, engine, s3, version, worker_group(version))
            print(report(args, runs, celery))
        finally:
            engine.dispose()


if __name__ == "__main__":
    main()
