"""Where the batched worker's time goes: its stages timed, then cProfile's top functions.

    .venv/bin/python bench/profile_worker.py [--jobs 20000] [--batch 2000] [--top 25]

Publishes `--package` (default the fraud model; `build/models/minilm` for text) under a
fresh name and queues `--jobs` jobs as `bench/throughput.py` and `bench/embeddings.py`
do (`bench.workload.synthetic_requests`), then drives the real `worker.main.Worker` in
this process (same settings, same Kafka consumer, same Postgres statements), calling
`handle_batch` (one batch at a time, without the pipeline) until every job is claimed.
Pass 1 wraps each stage in a timer and prints seconds per batch and per 1,000 jobs
for: poll (kafka-python fetch and record parsing), decode (JSON → JobMessage), claim
(CLAIM), preprocess (the model's step: stacking columns, or tokenizing), session.run,
split (outputs to Python lists), encode (json.dumps of each outcome), finish (COPY and
one UPDATE, encode excluded) and commit. Pass 2 queues as many jobs again and runs them
under cProfile, printing the top
`--top` functions by own time (cProfile slows Python code down, so read its shares, not
its seconds; `--top 0` skips it).
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import pstats
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

if __package__ in (None, ""):  # run as a file: make `bench` importable as a package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import Engine

import worker.main
import worker.runtime
import worker.units
from bench.workload import (
    insert_queued,
    jobs_from,
    produce,
    publish_fresh,
    remove,
    synthetic_requests,
)
from inferfleet.clients.db import make_engine
from inferfleet.clients.objectstore import make_s3_client
from inferfleet.models.registry import ModelVersion
from inferfleet.settings import Settings, load_settings
from worker import persist
from worker.consume import JobConsumer
from worker.health import Readiness
from worker.metrics import WorkerMetrics
from worker.modelstore import ModelStore

REPO = Path(__file__).resolve().parents[1]
RUN = "bench-profile"
STAGES = (
    "poll",
    "decode",
    "claim",
    "preprocess",
    "session.run",
    "split",
    "encode",
    "finish",
    "commit",
)
# Stages timed inside another: their seconds are taken out of the outer one's.
NESTED = {"encode": "finish"}

T = TypeVar("T", bound=Callable[..., Any])


class StageClock:
    """Seconds spent in each named stage, summed over the batches of a pass."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.enabled = False

    def wrap(self, stage: str, fn: T) -> T:
        """`fn`, timed under `stage` while the clock is enabled."""

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if not self.enabled:
                return fn(*args, **kwargs)
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - started

        return timed  # type: ignore[return-value]


def instrument(clock: StageClock) -> None:
    """Wrap the worker's stage functions, in this process only, as `handle_batch` sees them."""
    for module, name, stage in (
        (worker.units, "decode_records", "decode"),
        (worker.main, "split_outputs", "split"),
        (persist, "claim", "claim"),
        (persist, "finish", "finish"),
        (persist, "_encode", "encode"),
    ):
        setattr(module, name, clock.wrap(stage, getattr(module, name)))


class TimedSession:
    """An ONNX Runtime session whose `run` is timed as the `session.run` stage."""

    def __init__(self, session: Any, clock: StageClock) -> None:
        self._session = session
        self.run = clock.wrap("session.run", session.run)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


def timed_consumer_factory(
    clock: StageClock, made: list[JobConsumer]
) -> Callable[[Settings, Sequence[str]], JobConsumer]:
    """A factory for the worker's consumer with `poll` and `commit` timed; each goes in `made`."""

    def factory(settings: Settings, topics: Sequence[str]) -> JobConsumer:
        consumer = JobConsumer(settings, topics)
        consumer.poll = clock.wrap("poll", consumer.poll)  # type: ignore[method-assign]
        consumer.commit = clock.wrap("commit", consumer.commit)  # type: ignore[method-assign]
        made.append(consumer)
        return consumer

    return factory


def drain(the_worker: worker.main.Worker, consumer: JobConsumer, count: int) -> tuple[int, float]:
    """Handle batches until `count` jobs were claimed; returns (batches, seconds)."""
    claimed = batches = 0
    started = time.perf_counter()
    while claimed < count:
        summary = the_worker.handle_batch(consumer)
        if summary is not None:
            claimed += summary.claimed
            batches += 1
    return batches, time.perf_counter() - started


def queue_jobs(settings: Settings, engine: Engine, version: ModelVersion, count: int) -> None:
    """`count` queued rows and their messages, as the API would leave them."""
    jobs = jobs_from(synthetic_requests(version, count, seed=time.time_ns() % 2**32))
    insert_queued(engine, version.name, version.version, jobs, RUN)
    produce(settings, version, jobs, RUN)


def print_stages(clock: StageClock, batches: int, count: int, wall: float) -> None:
    """Seconds per batch and per 1,000 jobs for each stage, and what is left unaccounted."""
    print(
        f"\npass 1: {count:,} jobs in {batches} batches, {wall:.2f} s, {count / wall:,.0f} jobs/s"
    )
    print(f"{'stage':14}{'s/batch':>10}{'ms/1k jobs':>12}{'share':>8}")
    own = dict(clock.seconds)
    for inner, outer in NESTED.items():
        own[outer] = own.get(outer, 0.0) - own.get(inner, 0.0)
    for stage in (*STAGES, "other"):
        seconds = own.get(stage, 0.0) if stage != "other" else wall - sum(own.values())
        print(
            f"{stage:14}{seconds / batches:>10.4f}{seconds / count * 1e6:>12.1f}"
            f"{seconds / wall:>8.0%}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=Settings().poll_max_records)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--package", type=Path, default=REPO / "build" / "models" / "fraud")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="inferfleet-profile-") as tmp:
        base = load_settings(model_cache_dir=Path(tmp))
        engine = make_engine(base, pool_size=2)
        s3 = make_s3_client(base)
        version = publish_fresh(base, engine, s3, args.package)
        settings = load_settings(
            model_cache_dir=Path(tmp),
            worker_models=[version.name],
            worker_group=f"{version.name}-workers",
            poll_max_records=args.batch,
        )
        try:
            profile(settings, engine, s3, version, args)
        finally:
            remove(base, engine, s3, version, settings.worker_group)
            engine.dispose()


def profile(
    settings: Settings, engine: Engine, s3: Any, version: ModelVersion, args: argparse.Namespace
) -> None:
    clock = StageClock()
    instrument(clock)
    store = ModelStore(settings, engine, s3)
    consumer: list[JobConsumer] = []
    the_worker = worker.main.Worker(
        settings,
        engine,
        store,
        WorkerMetrics(),
        Readiness(),
        consumer_factory=timed_consumer_factory(clock, consumer),
    )
    if not the_worker.start():
        raise RuntimeError("the worker stopped before it started")
    model = store.get(version.name, version.version)
    model.session = TimedSession(model.session, clock)
    model.preprocess = clock.wrap("preprocess", model.preprocess)
    try:
        queue_jobs(settings, engine, version, args.jobs)
        clock.enabled = True
        batches, wall = drain(the_worker, consumer[0], args.jobs)
        clock.enabled = False
        print_stages(clock, batches, args.jobs, wall)

        if not args.top:
            return
        queue_jobs(settings, engine, version, args.jobs)
        profiler = cProfile.Profile()
        profiler.enable()
        drain(the_worker, consumer[0], args.jobs)
        profiler.disable()
        print(f"\npass 2 under cProfile: top {args.top} functions by own time")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(args.top)
    finally:
        consumer[0].close()


if __name__ == "__main__":
    main()
