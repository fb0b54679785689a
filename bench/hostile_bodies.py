"""The API's memory under hostile request bodies, sent by a few clients at once.

    .venv/bin/python bench/hostile_bodies.py [--clients 3] [--body-mib 32] [--only NAME]

Needs the local stack and a migrated database (see bench/README.md); no model is
published: the bodies name a model that does not exist, so nothing is queued, and
everything that costs memory (reading and parsing the body) happens before the 404.

Each scenario starts a fresh `python -m api` on a free port, makes a few warm-up
requests, then sends `--clients` bodies of `--body-mib` MiB at once over 127.0.0.1 and
reports the process's resident set before (VmRSS) and its peak while they were handled
(Linux's VmHWM, reset through /proc/<pid>/clear_refs just before, and VmRSS sampled
every 5 ms), and the answers:

- `anonymous`: `POST /v1/jobs/bulk` with no key, the body 32 MiB of `{},{},…` (the
  document that grows about 24 times when parsed);
- `unknown key`: the same with a key that does not exist;
- `flood`: the same with a valid key (more items than a bulk request may hold);
- `bulk of 10,000`: 10,000 items of fraud inputs, each padded with a string to fill
  the body: the largest body of the most items a request may hold;
- `one deep item`: one item whose inputs hold as many `{}` as fit: what the item count
  does not bound, and only the large-body slots (`INFERFLEET_LARGE_BODY_SLOTS`) do.

The key is made for the tenant `bench` and revoked at the end. Figures are for
reading, never for asserting.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `bench` importable as a package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from bench.worker_process import free_port
from inferfleet.clients.db import make_engine
from inferfleet.settings import load_settings
from inferfleet.tenants import keys

REPO = Path(__file__).resolve().parents[1]
MODEL = "bench-no-such-model"
INPUTS = {
    "transaction_amount": 245.5,
    "merchant_category": "electronics",
    "user_account_age_days": 847,
    "hour_of_day": 14,
}


def flood(size: int) -> bytes:
    """A bulk body of `size` bytes whose items are all `{}`."""
    head, tail = b'{"model": "' + MODEL.encode() + b'", "items": [', b"]}"
    count = (size - len(head) - len(tail) + 1) // 3
    return head + b",".join([b"{}"] * count) + tail


def bulk_of_10000(size: int) -> bytes:
    """10,000 fraud items padded to make the body `size` bytes."""
    item = json.dumps({"inputs": {**INPUTS, "pad": ""}}).encode()
    head, tail = b'{"model": "' + MODEL.encode() + b'", "items": [', b"]}"
    pad = (size - len(head) - len(tail) - 10_000 * (len(item) + 1)) // 10_000
    padded = json.dumps({"inputs": {**INPUTS, "pad": "x" * pad}}).encode()
    return head + b",".join([padded] * 10_000) + tail


def one_deep_item(size: int) -> bytes:
    """One item whose inputs hold a list of `{}` filling the body to `size` bytes."""
    head = b'{"model": "' + MODEL.encode() + b'", "items": [{"inputs": {"pad": ['
    tail = b"]}}]}"
    count = (size - len(head) - len(tail) + 1) // 3
    return head + b",".join([b"{}"] * count) + tail


def status_kib(pid: int, field: str) -> int:
    """A `VmRSS`/`VmHWM` line of /proc/<pid>/status, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


@contextmanager
def api_process() -> Iterator[tuple[str, int]]:
    """A fresh `python -m api` on a free port: its URL and pid."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "api", "--port", str(port)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the API did not start (exit code {proc.poll()})")
            time.sleep(0.2)
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@dataclass(frozen=True)
class Result:
    scenario: str
    before_mib: float
    peak_mib: float
    statuses: list[int]
    seconds: float

    @property
    def growth_mib(self) -> float:
        return self.peak_mib - self.before_mib


def measure(scenario: str, body: bytes, headers: dict[str, str], clients: int) -> Result:
    with api_process() as (url, pid):
        for _ in range(3):  # warm up: imports, the first connections, the threadpool
            httpx.get(f"{url}/v1/jobs", headers=headers, timeout=30)
            httpx.post(
                f"{url}/v1/jobs/bulk",
                json={"model": MODEL, "items": [{"inputs": INPUTS}]},
                headers=headers,
                timeout=30,
            )
        before = status_kib(pid, "VmRSS")
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        peak = before
        sampling = True

        def sample() -> None:
            nonlocal peak
            while sampling:
                peak = max(peak, status_kib(pid, "VmRSS"))
                time.sleep(0.005)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        send: Callable[[int], httpx.Response] = lambda _: httpx.post(  # noqa: E731
            f"{url}/v1/jobs/bulk",
            content=body,
            headers={**headers, "Content-Type": "application/json"},
            timeout=300,
        )
        started = time.monotonic()
        with ThreadPoolExecutor(clients) as pool:
            answers = list(pool.map(send, range(clients)))
        seconds = time.monotonic() - started
        sampling = False
        sampler.join()
        peak = max(peak, status_kib(pid, "VmHWM"))
    return Result(scenario, before / 1024, peak / 1024, [a.status_code for a in answers], seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument(
        "--only", action="append", help="run only this scenario (repeatable), e.g. 'flood'"
    )
    parser.add_argument(
        "--body-mib",
        type=float,
        default=None,
        help="body size (default: INFERFLEET_MAX_BULK_BODY_BYTES)",
    )
    args = parser.parse_args()
    settings = load_settings()
    size = int(args.body_mib * 1024 * 1024) if args.body_mib else settings.max_bulk_body_bytes
    engine = make_engine(settings)
    with engine.begin() as conn:
        made = keys.create_key(conn, "bench", "jobs")
    key = {"Authorization": f"Bearer {made.key}"}
    scenarios = [
        ("anonymous", flood(size), {}),
        ("unknown key", flood(size), {"Authorization": "Bearer ifk_not-a-key"}),
        ("flood", flood(size), key),
        ("bulk of 10,000", bulk_of_10000(size), key),
        ("one deep item", one_deep_item(size), key),
    ]
    try:
        print(f"{args.clients} clients at once, bodies of {size / 2**20:.1f} MiB")
        print(
            f"{'scenario':<16} {'before':>10} {'peak':>10} {'growth':>10} {'seconds':>8}  answers"
        )
        for name, body, headers in scenarios:
            if args.only and name not in args.only:
                continue
            r = measure(name, body, headers, args.clients)
            print(
                f"{r.scenario:<16} {r.before_mib:>7.0f} MiB {r.peak_mib:>6.0f} MiB "
                f"{r.growth_mib:>6.0f} MiB {r.seconds:>8.2f}  {r.statuses}",
                flush=True,
            )
    finally:
        with engine.begin() as conn:
            keys.revoke(conn, made.record.id)
        engine.dispose()


if __name__ == "__main__":
    main()
