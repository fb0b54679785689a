"""The demo's client: submit fraud jobs with the client library, wait for every one, report.

    INFERFLEET_DEMO_KEY=<api key> INFERFLEET_DEMO_SECRET=<whsec_…> \
        python scripts/demo_client.py --api http://127.0.0.1:8000 --worker http://127.0.0.1:9100

Submits `--singles` jobs one request each (`client.jobs.create`, 16 at a time; the first
`--webhooks` of them ask for a webhook to a receiver this script serves on 127.0.0.1) and
`--bulk` more in bulk requests (`client.jobs.create_many`), long-polls every job to its
end (`client.jobs.wait_many`: 100 jobs a request, 32 requests at a time, with a progress
line on stderr), waits for the webhooks and checks their signatures with the tenant's
secret (`verify_webhook`), prints a few results and the throughput, and exits non-zero
unless every job succeeded and every webhook arrived, signed.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import urllib3

from inferfleet_client import Client, Job, Progress, WebhookVerificationError, verify_webhook
from inferfleet_client.progress import ProgressLine

READERS = 32  # requests in flight (of 100 jobs each) while every job is read back

CATEGORIES = ["electronics", "fashion", "gaming", "gift_cards", "grocery", "restaurants",
              "travel", "utilities"]  # fmt: skip


def transaction(rng: random.Random) -> dict[str, Any]:
    return {
        "transaction_amount": round(rng.lognormvariate(4.0, 1.2), 2),
        "merchant_category": rng.choice(CATEGORIES),
        "user_account_age_days": rng.randint(0, 3650),
        "hour_of_day": rng.randint(0, 23),
    }


def wait_ready(url: str, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    sys.exit(f"demo: the {what} at {url} was not ready after {timeout:.0f} s")


class Urllib3Transport(httpx.BaseTransport):
    """httpx's transport seam filled by urllib3's connection pool: the library makes every
    request (retries, parsing) and urllib3 carries it. On a machine whose cores the API
    shares, the client's own cost per request shows in the figure, and urllib3's is well
    below httpcore's. It reads whole bodies: no streams (the demo uses none)."""

    def __init__(self, connections: int) -> None:
        self.pools = urllib3.PoolManager(maxsize=connections)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        wait = request.extensions.get("timeout", {})
        answer = self.pools.request(
            request.method,
            str(request.url),
            body=request.read() or None,
            headers=dict(request.headers),
            timeout=urllib3.Timeout(connect=wait.get("connect"), read=wait.get("read")),
            retries=False,
            redirect=False,
        )
        # urllib3 has decoded and de-chunked the body: its framing headers no longer hold.
        framing = ("content-encoding", "transfer-encoding", "content-length")
        headers = [(k, v) for k, v in answer.headers.items() if k.lower() not in framing]
        return httpx.Response(answer.status, headers=headers, content=answer.data)

    def close(self) -> None:
        self.pools.clear()


def read_back_all(client: Client, ids: list[str]) -> list[Job]:
    """Every job, long-polled to its end, READERS at a time, in `ids`' order."""
    line = ProgressLine("demo: waiting", unit="jobs")

    def moved(p: Progress) -> None:
        line.update(p.done, p.total)

    try:
        return client.jobs.wait_many(ids, concurrency=READERS, on_progress=moved)
    finally:
        line.close()


class Receiver:
    """Receives webhooks on 127.0.0.1 and keeps the job IDs whose signature held."""

    def __init__(self, secret: str) -> None:
        self.verified: set[str] = set()
        self.forged = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                try:
                    event = verify_webhook(body, dict(self.headers.items()), secret)
                    with receiver.lock:
                        receiver.verified.add(event["data"]["id"])
                except WebhookVerificationError:
                    with receiver.lock:
                        receiver.forged += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", default="http://127.0.0.1:8000")
    parser.add_argument("--worker", default="http://127.0.0.1:9100")
    parser.add_argument("--model", default="fraud")
    parser.add_argument("--singles", type=int, default=1000)
    parser.add_argument("--bulk", type=int, default=9000)
    parser.add_argument("--webhooks", type=int, default=100)
    args = parser.parse_args()

    wait_ready(args.api, "API")
    wait_ready(args.worker, "worker")
    rng = random.Random(2026)
    singles = [transaction(rng) for _ in range(args.singles)]
    bulk = [transaction(rng) for _ in range(args.bulk)]

    key = os.environ.get("INFERFLEET_DEMO_KEY")
    secret = os.environ.get("INFERFLEET_DEMO_SECRET")
    if not key or not secret:
        sys.exit(
            "demo: set INFERFLEET_DEMO_KEY and INFERFLEET_DEMO_SECRET to an API key and its "
            "tenant's webhook secret (inferfleet keys create ... prints both)"
        )
    receiver = Receiver(secret)
    transport = httpx.Client(transport=Urllib3Transport(connections=READERS + 16))
    with transport, Client(args.api, api_key=key, timeout_s=60, http=transport) as client:

        def submit(numbered: tuple[int, dict[str, Any]]) -> str:
            n, inputs = numbered
            webhook = receiver.url if n < args.webhooks else None
            return client.jobs.create(args.model, inputs, webhook=webhook).id

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=16) as pool:
            ids = list(pool.map(submit, enumerate(singles)))
        hooked = set(ids[: args.webhooks])
        ids.extend(client.jobs.create_many(args.model, bulk, chunk_size=5000))
        submitted = time.monotonic() - started
        print(f"demo: submitted {len(ids)} jobs in {submitted:.2f} s "
              f"({args.singles} single requests, {args.bulk} in bulk)")  # fmt: skip

        reading = time.monotonic()
        jobs = read_back_all(client, ids)
        read_back = time.monotonic() - reading
        elapsed = time.monotonic() - started

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not hooked <= receiver.verified:
        time.sleep(0.2)
    receiver.server.shutdown()

    for job in jobs[:3] + jobs[-2:]:
        print(f"demo: {job.id} v{job.version} {job.status} {job.outputs}")
    statuses: dict[str, int] = {}
    for job in jobs:
        statuses[job.status] = statuses.get(job.status, 0) + 1
    first_in = min(job.created_at for job in jobs)
    last_out = max(job.completed_at or job.created_at for job in jobs)
    span = (last_out - first_in).total_seconds()
    print(f"demo: statuses {statuses}")
    print(
        f"demo: first submit to last result: {span:.2f} s = {len(jobs) / span:.0f} jobs/s "
        f"(submission over HTTP is the limit here; bench/throughput.py measures the worker)"
    )
    rate = len(jobs) / read_back
    print(f"demo: read every job back over HTTP in {read_back:.2f} s ({rate:.0f} jobs/s; "
          f"{elapsed:.2f} s from the first submit)")  # fmt: skip
    got = len(hooked & receiver.verified)
    print(f"demo: webhooks: {got} of {len(hooked)} arrived with a valid signature, "
          f"{receiver.forged} failed verification")  # fmt: skip
    ok = statuses == {"succeeded": len(jobs)} and got == len(hooked) and not receiver.forged
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
