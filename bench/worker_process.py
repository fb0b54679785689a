"""A service under test as a subprocess: start it, wait for it, time a backlog, stop it.

`run_worker` is the bench's measurement of `python -m worker` end to end: the jobs are
COPYed into `jobs` and their messages produced to Kafka before the worker starts, then
the clock runs from the first job's `started_at` to the poll that first sees every row
terminal (`bench.workload.wait_until_ended`), and the worker is stopped with SIGTERM.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import Engine

from bench.workload import Completion, Job, analyze, insert_queued, produce, wait_until_ended
from inferfleet.models.registry import ModelVersion
from inferfleet.settings import Settings

REPO = Path(__file__).resolve().parents[1]
LISTENING = re.compile(r"worker http listening on ([\d.]+):(\d+)")
BATCH_LINE = re.compile(r"batch records=(\d+) .* seconds=([\d.]+)")
START_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class WorkerRun:
    """The batched worker over jobs already on Kafka."""

    completion: Completion
    ready_to_done_s: float
    batch_sizes: list[int]
    batch_seconds: list[float]
    exit_code: int


def run_worker(
    settings: Settings,
    engine: Engine,
    version: ModelVersion,
    jobs: Sequence[Job],
    run: str,
    env: Mapping[str, str],
    log_path: Path,
    analyze_first: bool,
    repo: Path = REPO,
) -> WorkerRun:
    """Queue `jobs` on Kafka, then run `python -m worker` until all have ended.

    `env` adds to this process's environment (INFERFLEET_* settings of the worker);
    the worker serves `version.name` as group `<name>-workers` with its HTTP server on
    a free port. `run` tags the rows (request_id), so only they are counted. `repo` is
    the checkout whose worker runs (another commit's, to compare).
    """
    count = len(jobs)
    insert_backlog(engine, version, jobs, run, analyze_first)
    timed(f"produced {count:,} messages", produce, settings, version, jobs, run)
    process = start(
        [sys.executable, "-m", "worker"],
        os.environ
        | {
            "INFERFLEET_WORKER_MODELS": f'["{version.name}"]',
            "INFERFLEET_WORKER_GROUP": worker_group(version),
            "INFERFLEET_WORKER_HTTP_PORT": "0",
        }
        | dict(env),
        log_path,
        repo,
    )
    try:
        host, port = wait_for_line(log_path, LISTENING, process).groups()
        ready_at = wait_ready(f"http://{host}:{port}/readyz", process)
        print(f"worker ready after loading the model; {count:,} jobs waiting", flush=True)
        completion = wait_for_jobs(engine, version, run, count, process)
        ready_to_done_s = completion.seen_done.timestamp() - ready_at
    finally:
        exit_code = stop(process)
    found = BATCH_LINE.findall(log_path.read_text())
    return WorkerRun(
        completion,
        ready_to_done_s,
        [int(records) for records, _ in found],
        [float(seconds) for _, seconds in found],
        exit_code,
    )


def worker_group(version: ModelVersion) -> str:
    """The consumer group `run_worker` uses (and `bench.workload.remove` deletes)."""
    return f"{version.name}-workers"


def insert_backlog(
    engine: Engine, version: ModelVersion, jobs: Sequence[Job], run: str, analyze_first: bool
) -> None:
    """Insert `jobs` as queued rows tagged `run`, then (optionally) ANALYZE `jobs`."""
    timed(
        f"inserted {len(jobs):,} queued rows",
        insert_queued,
        engine,
        version.name,
        version.version,
        jobs,
        run,
    )
    if analyze_first:
        timed("analyzed jobs", analyze, engine)


def timed(what: str, fn: Callable[..., None], *args: object) -> None:
    """Call `fn(*args)` and print how long it took."""
    started = time.perf_counter()
    fn(*args)
    print(f"{what} in {time.perf_counter() - started:.1f} s", flush=True)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, for a server a bench starts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start(
    command: list[str], env: Mapping[str, str], log_path: Path, repo: Path = REPO
) -> subprocess.Popen[bytes]:
    """Run `command` from the root of `repo` (this checkout unless told), its code first
    on the path, stdout and stderr into `log_path`."""
    env = dict(env)
    if repo != REPO:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(repo), env.get("PYTHONPATH")]))
    with log_path.open("wb") as log:
        return subprocess.Popen(command, cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen[bytes], timeout_s: float = 60.0) -> int:
    """SIGTERM, then wait; a process that ignores it is killed and reported as -9."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return -9


def wait_for_line(
    log_path: Path, pattern: re.Pattern[str], process: subprocess.Popen[bytes]
) -> re.Match[str]:
    """The first match of `pattern` in the log; RuntimeError (with the log) if none comes."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if match := pattern.search(log_path.read_text()):
            return match
        if process.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(
        f"no line matching {pattern.pattern!r} in {log_path}:\n{log_path.read_text()}"
    )


def wait_ready(url: str, process: subprocess.Popen[bytes]) -> float:
    """Poll `url` until it answers 200; returns that moment (time.time())."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return time.time()
        except httpx.TransportError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"{url} did not turn 200 within {START_TIMEOUT_S:.0f} s")


def wait_for_jobs(
    engine: Engine, version: ModelVersion, run: str, count: int, process: subprocess.Popen[bytes]
) -> Completion:
    """Wait until the run's `count` jobs have ended, while `process` lives."""
    return wait_until_ended(
        engine,
        version.name,
        run,
        count,
        alive=lambda: process.poll() is None,
        timeout_s=max(300.0, count / 50),
    )
