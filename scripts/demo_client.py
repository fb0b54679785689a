"""The demo's client: submit fraud jobs over HTTP, wait for every one, report.

    INFERFLEET_DEMO_KEY=<api key> python scripts/demo_client.py \
        --api http://127.0.0.1:8000 --worker http://127.0.0.1:9100

Submits `--singles` jobs one request each (16 at a time) and `--bulk` more in bulk
requests, long-polls every job to its end, prints a few results and the throughput, and
exits non-zero unless every job succeeded.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import httpx

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", default="http://127.0.0.1:8000")
    parser.add_argument("--worker", default="http://127.0.0.1:9100")
    parser.add_argument("--model", default="fraud")
    parser.add_argument("--singles", type=int, default=1000)
    parser.add_argument("--bulk", type=int, default=9000)
    args = parser.parse_args()

    wait_ready(args.api, "API")
    wait_ready(args.worker, "worker")
    rng = random.Random(2026)
    singles = [transaction(rng) for _ in range(args.singles)]
    bulk = [transaction(rng) for _ in range(args.bulk)]

    key = os.environ.get("INFERFLEET_DEMO_KEY")
    if not key:
        sys.exit("demo: set INFERFLEET_DEMO_KEY to an API key (inferfleet keys create ...)")
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=args.api, timeout=60, headers=headers) as client:

        def submit(inputs: dict[str, Any]) -> str:
            r = client.post("/v1/jobs", json={"model": args.model, "inputs": inputs})
            r.raise_for_status()
            return str(r.json()["id"])

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=16) as pool:
            ids = list(pool.map(submit, singles))
        for start in range(0, len(bulk), 5000):
            items = [{"inputs": row} for row in bulk[start : start + 5000]]
            r = client.post("/v1/jobs/bulk", json={"model": args.model, "items": items})
            r.raise_for_status()
            ids.extend(r.json()["ids"])
        submitted = time.monotonic() - started
        print(f"demo: submitted {len(ids)} jobs in {submitted:.2f} s "
              f"({args.singles} single requests, {args.bulk} in bulk)")  # fmt: skip

        def finish(job_id: str) -> dict[str, Any]:
            while True:
                job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}", params={"wait": 30}).json()
                if job["status"] not in ("queued", "running"):
                    return job

        # Wait on the newest job first: when it is done, most others are too.
        with ThreadPoolExecutor(max_workers=16) as pool:
            jobs = list(pool.map(finish, reversed(ids)))[::-1]
        elapsed = time.monotonic() - started

    for job in jobs[:3] + jobs[-2:]:
        print(f"demo: {job['id']} v{job['version']} {job['status']} {job['outputs']}")
    statuses: dict[str, int] = {}
    for job in jobs:
        statuses[job["status"]] = statuses.get(job["status"], 0) + 1
    first_in = min(datetime.fromisoformat(job["created_at"]) for job in jobs)
    last_out = max(datetime.fromisoformat(job["completed_at"]) for job in jobs)
    span = (last_out - first_in).total_seconds()
    print(f"demo: statuses {statuses}")
    print(
        f"demo: first submit to last result: {span:.2f} s = {len(jobs) / span:.0f} jobs/s "
        f"(submission over HTTP is the limit here; bench/throughput.py measures the worker)"
    )
    print(f"demo: including reading every job back over HTTP: {elapsed:.2f} s")  # fmt: skip
    return 0 if statuses == {"succeeded": len(jobs)} else 1


if __name__ == "__main__":
    sys.exit(main())
