"""The API's front door against a bare FastAPI app, side by side in one run, with wrk.

    .venv/bin/python bench/api.py [--workers 1] [--seconds 10] [--jobs 100000]
                                  [--polls 1000] [--bulk-items 1000] [--quick]

Needs `wrk` (the Debian package; the bench installs nothing and says how when it is
missing), the local stack, a migrated database and the demo package (bench/README.md).
No worker runs, so every job stays `queued`. One run:

1. publishes the demo package under a fresh name (`bench-<hex>`), makes a `jobs` key of
   the tenant `bench`, and COPYs `--jobs` queued jobs for the GETs and long-polls;
2. starts `python -m api --workers N` and the bare app (`bench/bare_api.py`: the same
   pydantic request and response models, nothing behind them) with the same uvicorn
   settings (`api.serving.server_options`) and process count, each on a free port; the
   API gets rate and admission limits it cannot reach, so every check still runs and
   none refuses;
3. measures with `wrk -t1` (one load thread: at most one core taken from the servers),
   one app at a time: `POST /v1/jobs` and `GET /v1/jobs/{id}` (IDs drawn at random from
   the seeded jobs) at 1, 32 and 256 connections; `POST /v1/jobs/bulk` of `--bulk-items`
   items against a bare kafka-python produce (acks=all, the same topic and partitions,
   in awaited chunks of 10,000) of as many messages; `/healthz` alone and while
   `--polls` long-polls (`?wait=30` on queued jobs) are held open by an asyncio client
   (bench/longpolls.py);
4. prints a markdown table: req/s, p50, p99 and the ratios to the bare app.

Everything the run made is removed at the end (`--keep` leaves it). Figures are for
reading, never for asserting; `--quick` is a short functional run, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make `bench` and `api` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from sqlalchemy import Engine, text

from api.plumbing.metrics import MULTIPROCESS_ENV
from bench import wrk
from bench.longpolls import LongPolls
from bench.worker_process import free_port, start, stop, wait_ready
from bench.workload import (
    TENANT,
    insert_queued,
    jobs_from,
    produce,
    publish_fresh,
    remove,
    synthetic_inputs,
)
from inferfleet.clients.db import make_engine
from inferfleet.clients.objectstore import make_s3_client
from inferfleet.models.registry import ModelVersion
from inferfleet.settings import Settings, load_settings
from inferfleet.tenants import keys

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
CONNECTIONS = (1, 32, 256)
HEALTH_CONNECTIONS = 32
POLL_WAIT_S = 30
SEED_CHUNK = 20_000
MAX_PRODUCED = 500_000  # the bare produce sends as many jobs as the bulk line, at most this
JSON = {"Content-Type": "application/json"}
RUN = "bench-api"  # the seeded rows' and bare messages' request_id
# Limits the API checks on every request but that the bench never reaches.
UNREACHED = {
    "INFERFLEET_RATE_LIMIT": "1000000000/second",
    "INFERFLEET_ADMISSION_MAX_LAG": str(10**12),
}


@dataclass(frozen=True)
class Row:
    """One line of the table: the project's figures and the reference's."""

    what: str
    load: str
    ours: wrk.Result
    bare: wrk.Result | None
    unit: str = "req/s"
    scale: int = 1  # jobs per request (bulk)
    bare_rate: float | None = None  # a reference that is not an HTTP app (bare produce)

    def rates(self) -> tuple[float, float | None]:
        bare = self.bare_rate if self.bare is None else self.bare.rate * self.scale
        return self.ours.rate * self.scale, bare


@contextmanager
def served(command: list[str], env: dict[str, str], log: Path, ready: str) -> Iterator[None]:
    """A server process from the repository root until the block ends (SIGTERM)."""
    process = start(command, env, log)
    try:
        wait_ready(ready, process)
        yield
    except RuntimeError as e:
        raise RuntimeError(f"{e}\n--- {log} ---\n{log.read_text()[-4000:]}") from e
    finally:
        stop(process)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def report(rows: Sequence[Row], workers: int, seconds: int, polls: LongPolls | None) -> str:
    """The markdown table, then how the run was made."""
    lines = [
        "| | load | inferfleet | p50 | p99 | bare | p50 | p99 | ratio |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        ours, bare = row.rates()
        cells = [
            row.what,
            row.load,
            f"{ours:,.0f} {row.unit}",
            ms(row.ours.p50_s),
            ms(row.ours.p99_s),
        ]
        if row.bare is not None:
            cells += [f"{bare:,.0f} {row.unit}", ms(row.bare.p50_s), ms(row.bare.p99_s)]
        else:
            cells += [f"{bare:,.0f} {row.unit}" if bare else "", "", ""]
        cells.append(f"{ours / bare:.2f}" if bare else "")
        lines.append("| " + " | ".join(cells) + " |")
    failures = [
        f"{r.what} at {r.load}: inferfleet {r.ours.status_errors} answers >= 400, "
        f"{r.ours.socket_errors} socket errors"
        + (f"; bare {r.bare.status_errors}, {r.bare.socket_errors}" if r.bare else "")
        for r in rows
        if r.ours.status_errors
        or r.ours.socket_errors
        or (r.bare and (r.bare.status_errors or r.bare.socket_errors))
    ]
    lines += [
        "",
        f"{workers} process(es) per app (uvicorn, api.serving.server_options); wrk -t1 "
        f"(one load thread) for {seconds} s per line on the same machine; no worker runs.",
    ]
    if polls is not None:
        lines.append(
            f"long-polls: {polls.opened:,} opened in {polls.open_seconds:.1f} s and all held "
            f"by the API {polls.held_seconds:.1f} s later, before /healthz was measured; when the "
            f"/healthz line ended {polls.answered} had been answered and {polls.dropped} "
            f"dropped (held: {polls.opened - polls.answered - polls.dropped:,})"
        )
    lines += failures or ["no answer of 400 or more, no socket errors"]
    return "\n".join(lines)


def seed(engine: Engine, version: ModelVersion, count: int, folder: Path) -> Path:
    """COPY `count` queued jobs of the bench's tenant; their IDs, one a line, in a file."""
    inputs = synthetic_inputs(version.request_schema, 1000, seed=3)
    path = folder / "ids.txt"
    started = time.perf_counter()
    with path.open("w") as out:
        for first in range(0, count, SEED_CHUNK):
            size = min(SEED_CHUNK, count - first)
            batch = jobs_from([inputs[i % len(inputs)] for i in range(size)])
            insert_queued(engine, version.name, version.version, batch, RUN)
            out.writelines(f"{job.id}\n" for job in batch)
    # Vacuumed and analysed now, so that autovacuum does not do it on the same cores
    # while a line is measured.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE jobs"))
    print(f"seeded {count:,} queued jobs in {time.perf_counter() - started:.1f} s", flush=True)
    return path


def answered(response: httpx.Response, status: int) -> None:
    """Stop the run unless `response` has `status`: a refused request measures nothing."""
    if response.status_code != status:
        raise RuntimeError(
            f"{response.request.method} {response.request.url} answered "
            f"{response.status_code}, not {status}: {response.text[:500]}"
        )


def enough_files(polls: int) -> None:
    """Raise this process's open-file limit (its servers inherit it) for the polls."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * polls + 1024
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def held_by(base: str, count: int, timeout_s: float = 60) -> float:
    """Seconds until the API reports `count` long-polls held (`inferfleet_api_long_poll_requests`
    on /metrics), so /healthz is measured beside them and not while they are admitted."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        text = httpx.get(f"{base}/metrics", timeout=10).text
        held = sum(
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith("inferfleet_api_long_poll_requests")
        )
        if held >= count:
            return time.perf_counter() - started
        time.sleep(0.1)
    raise RuntimeError(f"the API held fewer than {count} long-polls after {timeout_s} s")


def bare_produce(settings: Settings, version: ModelVersion, inputs: list[Any], count: int) -> float:
    """Jobs/s of kafka-python producing `count` job messages of `inputs` (acks=all)."""
    jobs = jobs_from([inputs[i % len(inputs)] for i in range(count)])
    started = time.perf_counter()
    produce(settings, version, jobs, RUN)
    return count / (time.perf_counter() - started)


def measure(
    args: argparse.Namespace,
    wrk_path: str,
    tmp: Path,
    logs: Path,
    settings: Settings,
    engine: Engine,
    version: ModelVersion,
    key: str,
) -> tuple[list[Row], LongPolls]:
    """Every line of the table, the servers started and stopped around them."""
    ids_file = seed(engine, version, args.jobs, tmp)
    ids = ids_file.read_text().split()
    auth = {"Authorization": f"Bearer {key}"}
    inputs = synthetic_inputs(version.request_schema, args.bulk_items, seed=7)
    one = json.dumps({"model": version.name, "inputs": inputs[0]})
    bulk = json.dumps({"model": version.name, "items": [{"inputs": i} for i in inputs]})
    post = wrk.script(tmp, "post", auth, body=one)
    get = wrk.script(tmp, "get", auth, ids=ids_file, path_prefix="/v1/jobs/")
    bulk_lua = wrk.script(tmp, "bulk", auth, body=bulk)
    health = wrk.script(tmp, "health", {})

    ours_port, bare_port = free_port(), free_port()
    ours, bare = f"http://{HOST}:{ours_port}", f"http://{HOST}:{bare_port}"
    env = dict(os.environ) | {"PYTHONPATH": str(REPO)} | UNREACHED
    env.pop(MULTIPROCESS_ENV, None)
    workers = ["--workers", str(args.workers)]
    enough_files(args.polls)

    def load(url: str, lua: Path, connections: int, seconds: int = args.seconds) -> wrk.Result:
        return wrk.run(wrk_path, url, lua, connections, seconds)

    rows: list[Row] = []
    with (
        served(
            [sys.executable, "-m", "api", "--port", str(ours_port), *workers],
            env,
            logs / "api.log",
            f"{ours}/readyz",
        ),
        served(
            [sys.executable, "-m", "bench.bare_api", "--port", str(bare_port), *workers],
            env,
            logs / "bare.log",
            f"{bare}/healthz",
        ),
    ):
        print(f"inferfleet on {ours}, bare on {bare}, {args.workers} process(es) each", flush=True)
        for base in (ours, bare):  # each request shape answers as it should, once, first
            answered(
                httpx.post(f"{base}/v1/jobs", content=one, headers=auth | JSON, timeout=60), 202
            )
            answered(httpx.get(f"{base}/v1/jobs/{ids[0]}", headers=auth, timeout=60), 200)
        answered(
            httpx.post(f"{ours}/v1/jobs/bulk", content=bulk, headers=auth | JSON, timeout=60), 202
        )
        for what, path, lua in (
            ("`POST /v1/jobs`", "/v1/jobs", post),
            ("`GET /v1/jobs/{id}`", "/", get),
        ):
            load(ours + path, lua, 32, args.warmup)
            load(bare + path, lua, 32, args.warmup)
            for connections in CONNECTIONS:
                rows.append(
                    Row(
                        what,
                        f"{connections} conn.",
                        load(ours + path, lua, connections),
                        load(bare + path, lua, connections),
                    )
                )
                print(f"{what} at {connections}: done", flush=True)

        load(ours + "/v1/jobs/bulk", bulk_lua, args.bulk_connections, args.warmup)
        submitted = load(ours + "/v1/jobs/bulk", bulk_lua, args.bulk_connections)
        count = min(max(submitted.requests, 1) * args.bulk_items, MAX_PRODUCED)
        rows.append(
            Row(
                f"`POST /v1/jobs/bulk` ({args.bulk_items:,} items; p50, p99 per request) "
                "vs kafka-python produce",
                f"{args.bulk_connections} conn.",
                submitted,
                None,
                unit="jobs/s",
                scale=args.bulk_items,
                bare_rate=bare_produce(settings, version, inputs, count),
            )
        )
        print(f"bulk: done ({count:,} messages produced bare)", flush=True)

        load(ours + "/healthz", health, HEALTH_CONNECTIONS, args.warmup)
        alone = load(ours + "/healthz", health, HEALTH_CONNECTIONS)
        bare_health = load(bare + "/healthz", health, HEALTH_CONNECTIONS)
        rows.append(Row("`GET /healthz`", f"{HEALTH_CONNECTIONS} conn.", alone, bare_health))
        polls = LongPolls(HOST, ours_port, key, ids[: args.polls], POLL_WAIT_S)
        polls.start()
        try:
            polls.held_seconds = held_by(ours, len(ids[: args.polls]))
            held = load(ours + "/healthz", health, HEALTH_CONNECTIONS, min(args.seconds, 20))
        finally:
            polls.close()
        rows.append(
            Row(
                f"`GET /healthz`, {polls.opened:,} long-polls held",
                f"{HEALTH_CONNECTIONS} conn.",
                held,
                bare_health,
            )
        )
    return rows, polls


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=1, help="processes of each app")
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration per line")
    parser.add_argument("--warmup", type=int, default=2, help="wrk seconds before each app's lines")
    parser.add_argument("--jobs", type=int, default=100_000, help="queued jobs for the GETs")
    parser.add_argument("--polls", type=int, default=1000, help="long-polls held at once")
    parser.add_argument("--bulk-items", type=int, default=1000, help="items per bulk request")
    parser.add_argument("--bulk-connections", type=int, default=4)
    parser.add_argument("--package", type=Path, default=REPO / "build" / "models" / "fraud")
    parser.add_argument("--logs", type=Path, help="keep api.log and bare.log in this folder")
    parser.add_argument("--keep", action="store_true", help="leave the model, jobs and topics")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a short functional run: 2 s per line, 1 s warm-up, 10,000 seeded jobs",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.warmup, args.jobs = 2, 1, min(args.jobs, 10_000)
    return args


def main() -> None:
    args = parse_args()
    wrk_path = wrk.find()
    if wrk_path is None:
        sys.exit(f"wrk is not installed; install it with: {wrk.INSTALL}")
    print(f"wrk: {wrk_path} ({wrk.version(wrk_path)}), run with -t1", flush=True)
    with tempfile.TemporaryDirectory(prefix="inferfleet-bench-api-") as tmp_name:
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
        try:
            rows, polls = measure(args, wrk_path, tmp, logs, settings, engine, version, key.key)
            print()
            print(report(rows, args.workers, args.seconds, polls))
        finally:
            if args.keep:
                print(f"kept {version.name}: its rows, topics and S3 objects")
            else:
                remove(settings, engine, s3, version, f"{version.name}-none")
            with engine.begin() as conn:
                keys.revoke(conn, key.record.id)
            engine.dispose()


if __name__ == "__main__":
    main()
