"""Interactive latency beside a batch backlog: what priority lanes buy.

    .venv/bin/python bench/lanes.py [--batch-jobs 200000] [--rate 20] [--alone-s 20]

Needs the local stack (`scripts/stack.sh up`), a migrated database and the demo package
(`.venv/bin/python models/fraud/build.py build/models/fraud`). One run, one worker:

1. `python -m api` and `python -m worker` start as processes; the model is published
   under a fresh name (`bench-<hex>`).
2. Alone: interactive jobs are submitted over HTTP at `--rate` per second for
   `--alone-s` seconds, nothing else queued.
3. With a batch: `--batch-jobs` rows are COPYed into `jobs` as a batch ingest writes
   them (lane `batch`, a `batch_id`, line numbers, `produced_at`) and their messages
   produced to the model's `batch` topic while the worker runs. From the moment the
   worker finishes its first batch job until the batch's last one, interactive jobs
   are submitted at the same rate.

A job's submit-to-result latency runs from just before its POST (the bench's clock) to
its `completed_at` (the database's clock, same machine). The report gives p50, p99 and
the largest of both phases, their ratio, the part after the 202 split at the worker's
claim (`produced_at` to `started_at`: waiting in Kafka and on the worker's consumer
side; `started_at` to `completed_at`: claim, run, result), the batch's own rate, and
the worker's poll sizes. Everything the run made is removed at the end (`--keep`
leaves it). Timings are for reading, never for asserting.

The API and worker it starts are those of the checkout the script is in: run the
script of another checkout (`git worktree add --detach DIR COMMIT`, then
`.venv/bin/python DIR/bench/lanes.py`) to measure that commit's worker the same way.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make `bench` importable as a package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from psycopg.types.json import Jsonb
from sqlalchemy import Engine, text

from bench.worker_process import (
    BATCH_LINE,
    LISTENING,
    free_port,
    start,
    stop,
    timed,
    wait_for_line,
    wait_ready,
    worker_group,
)
from bench.workload import TENANT, message_row, publish_fresh, remove, synthetic_inputs
from inferfleet.clients.broker import make_producer, send_all
from inferfleet.clients.db import make_engine
from inferfleet.clients.objectstore import make_s3_client
from inferfleet.clients.topics import job_topic
from inferfleet.ids import new_job_id
from inferfleet.jobs import messages
from inferfleet.models.registry import ModelVersion
from inferfleet.settings import Settings, load_settings
from inferfleet.tenants import keys

REPO = Path(__file__).resolve().parents[1]
CHUNK = 10_000
COLUMNS = (
    "id",
    "tenant",
    "model",
    "version",
    "status",
    "lane",
    "inputs",
    "batch_id",
    "line",
    "produced_at",
)


@dataclass(frozen=True)
class Submitted:
    job_id: str
    at: datetime
    answered_s: float  # how long the POST took


@dataclass(frozen=True)
class Latencies:
    """Submit-to-result seconds of one phase's interactive jobs, the part of each after
    the API's 202 (queue and worker), and that part split at the worker's claim: from
    `produced_at` (recorded once Kafka acknowledged it, just after the API's answer, or
    by the claim if that comes first, so this part is a little short) to `started_at`
    (the claim's transaction began; the record was polled and handed to an execution
    thread), and from there to `completed_at` (run, result written)."""

    seconds: list[float]
    after_202: list[float]
    to_claim: list[float]
    claim_to_result: list[float]
    not_succeeded: int

    def pct(self, p: int, part: str = "seconds") -> float:
        values: list[float] = getattr(self, part)
        return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


class Submitter(threading.Thread):
    """POSTs one interactive job every 1/rate seconds until stopped."""

    def __init__(self, api: str, key: str, model: str, rate: float, inputs: list[Any]) -> None:
        super().__init__(name="submitter", daemon=True)
        self._client = httpx.Client(
            base_url=api, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )
        self._model = model
        self._every = 1.0 / rate
        self._inputs = inputs
        self.stopped = threading.Event()
        self.submitted: list[Submitted] = []
        self.refused = 0

    def run(self) -> None:
        started = time.monotonic()
        n = 0
        while not self.stopped.is_set():
            at = datetime.now(UTC)
            body = {"model": self._model, "inputs": self._inputs[n % len(self._inputs)]}
            posted = time.perf_counter()
            r = self._client.post("/v1/jobs", json=body)
            answered_s = time.perf_counter() - posted
            if r.status_code == 202:
                self.submitted.append(Submitted(r.json()["id"], at, answered_s))
            else:
                self.refused += 1
            n += 1
            self.stopped.wait(max(0.0, started + n * self._every - time.monotonic()))
        self._client.close()


def interactive_phase(
    args: argparse.Namespace,
    api: str,
    key: str,
    version: ModelVersion,
    until: Callable[[], bool],
) -> Submitter:
    inputs = synthetic_inputs(version.request_schema, 1000, seed=7)
    submitter = Submitter(api, key, version.name, args.rate, inputs)
    submitter.start()
    deadline = time.monotonic() + args.timeout_s
    try:
        while not until():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the phase did not end within {args.timeout_s:.0f} s")
            time.sleep(0.2)
    finally:
        submitter.stopped.set()
        submitter.join()
    return submitter


def latencies(engine: Engine, submitted: Sequence[Submitted], timeout_s: float) -> Latencies:
    """Wait until every submitted job has ended; their submit-to-result seconds."""
    ids = [s.job_id for s in submitted]
    query = text(
        "SELECT id, status, produced_at, started_at, completed_at FROM jobs WHERE id = ANY(:ids)"
    )
    deadline = time.monotonic() + timeout_s
    while True:
        with engine.connect() as conn:
            rows = {r.id: r for r in conn.execute(query, {"ids": ids})}
        if all(r.completed_at is not None for r in rows.values()) and len(rows) == len(ids):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"interactive jobs not done after {timeout_s:.0f} s")
        time.sleep(0.2)
    total = [(rows[s.job_id].completed_at - s.at).total_seconds() for s in submitted]
    ran = [r for r in rows.values() if r.started_at is not None and r.produced_at is not None]
    return Latencies(
        total,
        [t - s.answered_s for t, s in zip(total, submitted, strict=True)],
        [(r.started_at - r.produced_at).total_seconds() for r in ran],
        [(r.completed_at - r.started_at).total_seconds() for r in ran],
        sum(1 for r in rows.values() if r.status != "succeeded"),
    )


def insert_batch(
    engine: Engine, version: ModelVersion, batch_id: str, inputs: list[Any]
) -> list[str]:
    """COPY one queued batch-lane row per input, as a batch ingest writes them.

    `produced_at` is set here rather than after the produce: updating rows the worker
    is already running could deadlock with its own updates (and only the sweeper reads it).
    """
    ids = [new_job_id() for _ in inputs]
    now = datetime.now(UTC)
    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        sql = f"COPY jobs ({', '.join(COLUMNS)}) FROM STDIN"
        with raw.cursor() as cursor, cursor.copy(sql) as copy:
            for line, (job_id, row) in enumerate(zip(ids, inputs, strict=True), start=1):
                copy.write_row(
                    (job_id, TENANT, version.name, version.version, "queued", "batch",
                     Jsonb(row), batch_id, line, now)
                )  # fmt: skip
        conn.execute(text("ANALYZE jobs"))
    return ids


def produce_batch(
    settings: Settings,
    version: ModelVersion,
    batch_id: str,
    ids: list[str],
    inputs: list[Any],
) -> None:
    """The batch's messages on the `batch` topic, in chunks."""
    topic = job_topic(version.name, "batch")
    now = datetime.now(UTC)
    producer = make_producer(settings, client_id="inferfleet-bench-lanes")
    try:
        for start_at in range(0, len(ids), CHUNK):
            part = ids[start_at : start_at + CHUNK]
            records = [
                messages.record(topic, message_row(version, job_id, row, now, batch_id))
                for job_id, row in zip(part, inputs[start_at : start_at + CHUNK], strict=True)
            ]
            send_all(producer, records, timeout_s=60)
    finally:
        producer.close(timeout=10)


BATCH_PROGRESS = text(
    "SELECT count(*) FILTER (WHERE status IN ('succeeded', 'failed', 'cancelled', 'expired')) "
    "AS ended, min(started_at) AS first, max(completed_at) AS last "
    "FROM jobs WHERE batch_id = :b"
)


class BatchWatch:
    """How far the batch is, read at most every half second."""

    def __init__(self, engine: Engine, batch_id: str, total: int) -> None:
        self._engine = engine
        self._batch_id = batch_id
        self.total = total
        self.ended = 0
        self.first: datetime | None = None
        self.last: datetime | None = None
        self._read_at = 0.0

    def read(self) -> int:
        if time.monotonic() - self._read_at >= 0.5:
            with self._engine.connect() as conn:
                row = conn.execute(BATCH_PROGRESS, {"b": self._batch_id}).one()
            self.ended, self.first, self.last = row.ended, row.first, row.last
            self._read_at = time.monotonic()
        return self.ended

    def done(self) -> bool:
        return self.read() >= self.total


def report(
    args: argparse.Namespace,
    alone: Latencies,
    busy: Latencies,
    watch: BatchWatch,
    polls: list[int],
    refused: int,
) -> str:
    assert watch.first is not None
    assert watch.last is not None
    span = (watch.last - watch.first).total_seconds()
    rows = [
        ("interactive alone", alone),
        (f"interactive during a {args.batch_jobs:,}-row batch", busy),
    ]
    lines = [
        "",
        f"interactive jobs at {args.rate:g}/s over HTTP, submit -> completed_at (seconds):",
        f"{'':45} {'jobs':>6} {'p50':>7} {'p99':>7} {'max':>7}   after the 202: p50, p99",
    ]
    for name, lat in rows:
        lines.append(
            f"{name:45} {len(lat.seconds):>6} {lat.pct(50):>7.3f} {lat.pct(99):>7.3f} "
            f"{max(lat.seconds):>7.3f}   {lat.pct(50, 'after_202'):>7.3f} "
            f"{lat.pct(99, 'after_202'):>7.3f}"
        )
    lines += [
        f"{'ratio (during / alone)':45} {'':>6} {busy.pct(50) / alone.pct(50):>7.1f} "
        f"{busy.pct(99) / alone.pct(99):>7.1f}",
        "",
        "the part after the 202, split at the worker's claim: p50, p99 (seconds)",
    ]
    lines.append(f"{'':45} {'to the claim':>17} {'claim to result':>17}")
    for name, lat in rows:
        lines.append(
            f"{name:45} {lat.pct(50, 'to_claim'):>8.3f} {lat.pct(99, 'to_claim'):>8.3f} "
            f"{lat.pct(50, 'claim_to_result'):>8.3f} {lat.pct(99, 'claim_to_result'):>8.3f}"
        )
    lines += [
        "",
        f"batch: {watch.total:,} jobs in {span:.1f} s from first claim to last result "
        f"({watch.total / span:,.0f} jobs/s)",
        f"worker polls during the batch: {len(polls)}, median {statistics.median(polls):.0f} "
        f"records, {args.poll_max_records} at most",
        f"not succeeded: {alone.not_succeeded + busy.not_succeeded}; refused submits: {refused}",
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-jobs", type=int, default=200_000)
    parser.add_argument("--rate", type=float, default=20.0, help="interactive jobs per second")
    parser.add_argument("--alone-s", type=float, default=20.0)
    parser.add_argument("--poll-max-records", type=int, default=2000)
    parser.add_argument("--timeout-s", type=float, default=900.0, help="longest phase")
    parser.add_argument("--package", type=Path, default=REPO / "build" / "models" / "fraud")
    parser.add_argument("--logs", type=Path, help="keep api.log and worker.log in this folder")
    parser.add_argument("--keep", action="store_true")
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="inferfleet-bench-") as tmp_name:
        tmp = Path(tmp_name)
        logs = args.logs or tmp
        logs.mkdir(parents=True, exist_ok=True)
        settings = load_settings(model_cache_dir=tmp / "publish-cache")
        engine = make_engine(settings, pool_size=2)
        s3 = make_s3_client(settings)
        version = publish_fresh(settings, engine, s3, args.package)
        with engine.begin() as conn:
            key = keys.create_key(conn, TENANT, "jobs")
        print(f"published {version.name} v{version.version}", flush=True)
        port = free_port()
        env = {
            "INFERFLEET_WORKER_MODELS": f'["{version.name}"]',
            "INFERFLEET_WORKER_GROUP": worker_group(version),
            "INFERFLEET_WORKER_HTTP_PORT": "0",
            "INFERFLEET_POLL_MAX_RECORDS": str(args.poll_max_records),
            "INFERFLEET_MODEL_CACHE_DIR": str(tmp / "worker-cache"),
        }
        environ = dict(os.environ) | env
        api_proc = start(
            [sys.executable, "-m", "api", "--port", str(port)], environ, logs / "api.log"
        )
        worker = start([sys.executable, "-m", "worker"], environ, logs / "worker.log")
        try:
            api = f"http://127.0.0.1:{port}"
            wait_ready(f"{api}/readyz", api_proc)
            host, wport = wait_for_line(logs / "worker.log", LISTENING, worker).groups()
            wait_ready(f"http://{host}:{wport}/readyz", worker)
            print("api and worker ready", flush=True)

            ends = time.monotonic() + args.alone_s
            alone_sub = interactive_phase(
                args, api, key.key, version, lambda: time.monotonic() > ends
            )
            alone = latencies(engine, alone_sub.submitted, 120)
            print(f"alone: {len(alone.seconds)} jobs, p50 {alone.pct(50):.3f} s", flush=True)

            batch_id = f"bat_{uuid.uuid4().hex}"
            inputs = synthetic_inputs(version.request_schema, args.batch_jobs, seed=11)
            ids: list[str] = []
            timed(
                f"inserted {args.batch_jobs:,} batch rows",
                lambda: ids.extend(insert_batch(engine, version, batch_id, inputs)),
            )
            watch = BatchWatch(engine, batch_id, args.batch_jobs)
            log_start = len((logs / "worker.log").read_text())
            producing = threading.Thread(
                target=timed,
                args=(
                    f"produced {args.batch_jobs:,} batch messages",
                    produce_batch,
                    settings,
                    version,
                    batch_id,
                    ids,
                    inputs,
                ),
                daemon=True,
            )
            producing.start()
            while watch.read() == 0:
                time.sleep(0.1)
            busy_sub = interactive_phase(args, api, key.key, version, watch.done)
            producing.join()
            busy = latencies(engine, busy_sub.submitted, 300)
            during = (logs / "worker.log").read_text()[log_start:]
            polls = [int(n) for n, _ in BATCH_LINE.findall(during)]
            print(report(args, alone, busy, watch, polls, alone_sub.refused + busy_sub.refused))
        finally:
            stop(worker)
            stop(api_proc)
            if args.keep:
                print(f"kept {version.name}: its rows, topics and S3 objects")
            else:
                remove(settings, engine, s3, version, worker_group(version))
            with engine.begin() as conn:
                keys.revoke(conn, key.record.id)
            engine.dispose()


if __name__ == "__main__":
    main()
