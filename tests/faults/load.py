"""The load a fault runs under: paced bulk submits as a careful client makes them, and a
sampler of how many jobs have succeeded, from which the time to recover is read.

The client keeps one `Idempotency-Key` per request across its retries: a 503 or 429 is
asked again after `Retry-After`, and an answer it cannot trust (a 5xx other than 503, a
timeout, a dropped connection) too, so that a request that did land is answered with
its jobs instead of making new ones. Only the IDs of 202 and 200 answers are accepted.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from tests.integration.test_jobs import random_inputs


@dataclass(frozen=True)
class Plan:
    """How many jobs, in requests of how many, how often, and which carry a webhook."""

    jobs: int = 20_000
    per_request: int = 500
    interval_s: float = 1.0
    webhook_every: int = 10  # every n-th request asks for webhooks
    give_up_s: float = 300.0  # a request still refused after this is reported, not retried


@dataclass
class Load:
    """Submits `plan` to the API on a thread of its own (`start`, then `join`)."""

    api_url: str
    key: str
    model: str
    webhook_url: str
    plan: Plan = field(default_factory=Plan)
    accepted: list[str] = field(default_factory=list)
    with_webhook: list[str] = field(default_factory=list)
    answers: Counter[str] = field(default_factory=Counter)
    abandoned: int = 0  # requests given up on (their jobs are in no accepted list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def start(self) -> Load:
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)
        self._thread.start()
        return self

    def join(self, timeout: float) -> None:
        assert self._thread is not None
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the load was still submitting after {timeout:.0f} s")

    def accepted_count(self) -> int:
        with self._lock:
            return len(self.accepted)

    def _run(self) -> None:
        requests = -(-self.plan.jobs // self.plan.per_request)
        with httpx.Client(
            base_url=self.api_url, headers={"Authorization": f"Bearer {self.key}"}, timeout=30
        ) as client:
            for n in range(requests):
                started = time.monotonic()
                count = min(self.plan.per_request, self.plan.jobs - n * self.plan.per_request)
                body: dict[str, Any] = {
                    "model": self.model,
                    "items": [{"inputs": i} for i in random_inputs(count, seed=n)],
                }
                hooked = n % self.plan.webhook_every == self.plan.webhook_every - 1
                if hooked:
                    body["webhook"] = {"url": self.webhook_url}
                ids = self._submit(client, body)
                with self._lock:
                    self.accepted.extend(ids)
                    if hooked:
                        self.with_webhook.extend(ids)
                time.sleep(max(0.0, self.plan.interval_s - (time.monotonic() - started)))

    def _submit(self, client: httpx.Client, body: dict[str, Any]) -> list[str]:
        """Submit until an answer with IDs; [] if refused past `give_up_s`."""
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        deadline = time.monotonic() + self.plan.give_up_s
        while time.monotonic() < deadline:
            try:
                r = client.post("/v1/jobs/bulk", json=body, headers=headers)
            except httpx.TransportError as e:
                self.answers[type(e).__name__] += 1
                time.sleep(1.0)
                continue
            self.answers[str(r.status_code)] += 1
            if r.status_code in (200, 202):
                ids: list[str] = r.json()["ids"]
                return ids
            if r.status_code in (409, 422):
                break  # the test's own mistake: asking again cannot help
            time.sleep(min(float(r.headers.get("retry-after", 1)), 2.0))
        self.abandoned += 1
        return []


@dataclass
class Progress:
    """Samples the model's succeeded jobs every half second on a thread of its own."""

    engine: Engine
    model: str
    samples: list[tuple[float, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Progress:
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def succeeded(self) -> int:
        return self.samples[-1][1] if self.samples else 0

    def _run(self) -> None:
        query = text("SELECT count(*) FROM jobs WHERE model = :m AND status = 'succeeded'")
        while not self._stop.wait(0.5):
            try:
                with self.engine.connect() as conn:
                    n = conn.execute(query, {"m": self.model}).scalar_one()
            except DBAPIError:  # Postgres may be down: that is the fault
                continue
            self.samples.append((time.monotonic(), n))

    def longest_stall(self, start: float, end: float, target: int) -> float:
        """The longest time within [start, end] in which no job succeeded, up to the
        moment `target` jobs had (what follows, webhook deliveries, is not a stall)."""
        marks = [start]
        last = None
        for at, n in self.samples:
            if last is not None and n > last and start < at <= end:
                marks.append(at)
                if n >= target:
                    break
            last = n
        else:
            marks.append(end)
        return max(b - a for a, b in itertools.pairwise(marks))
