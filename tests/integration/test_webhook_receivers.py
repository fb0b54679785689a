"""Receivers that misbehave cost their own tenant alone: a real Celery dispatcher
(`python -m scheduler worker -B`) against receivers on 127.0.0.1 that drip, never end,
answer slowly or set cookies.

Events are written straight into the outbox (jobs already ended), as the worker's
results transaction writes them, so a test can make hundreds at once.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from standardwebhooks.webhooks import Webhook

from inferfleet.ids import new_job_id
from inferfleet.jobs.outbox import add_job_events
from inferfleet.tenants import keys
from scheduler.dispatch import TIMEOUT
from tests.integration.conftest import eventually, free_port, start_scheduler
from tests.integration.receiver import RawReceiver, Receiver, Responder, dripping, endless_body

pytestmark = pytest.mark.integration

TIMEOUT_S = 4.0


@pytest.fixture(scope="module")
def dispatcher(tmp_path_factory: pytest.TempPathFactory, engine: Engine) -> Iterator[Path]:
    """The dispatcher with the default threads and per-tenant cap, a 4 s deadline."""
    folder = tmp_path_factory.mktemp("receivers")
    env = {
        "INFERFLEET_REDIS_URL": "redis://127.0.0.1:6379/8",
        "INFERFLEET_WEBHOOK_ALLOWLIST": "127.0.0.1",
        "INFERFLEET_DISPATCH_INTERVAL_S": "0.2",
        "INFERFLEET_WEBHOOK_BACKOFF_BASE_S": "0.5",
        "INFERFLEET_WEBHOOK_BACKOFF_MAX_S": "1",
        "INFERFLEET_WEBHOOK_TIMEOUT_S": str(TIMEOUT_S),
        "INFERFLEET_PRESIGN_EXPIRY_S": "3600",
    }
    running = start_scheduler(folder, "receivers", env)
    try:
        yield running.log_path
    finally:
        running.stop()


def new_tenant(engine: Engine, prefix: str) -> tuple[str, str]:
    """A tenant of this test and its webhook secret."""
    name = f"{prefix}-{os.urandom(4).hex()}"
    with engine.begin() as conn:
        return name, keys.create_key(conn, name, "jobs").webhook_secret


def ended_jobs(
    engine: Engine,
    tenant: str,
    url: str,
    n: int,
    *,
    output_uri: str | None = None,
    window_s: float = 120.0,
) -> list[str]:
    """`n` ended jobs of `tenant` whose events go to `url`, retried for `window_s`."""
    ids = [new_job_id() for _ in range(n)]
    status = "succeeded" if output_uri else "cancelled"
    with engine.begin() as conn:
        conn.execute(
            text(
                """
                INSERT INTO jobs (id, tenant, model, version, status, lane, inputs,
                                  output_uri, webhook, completed_at)
                SELECT id, :tenant, 'receivers', 1, :status, 'interactive', '{}',
                       :output_uri, CAST(:webhook AS jsonb), now()
                  FROM unnest(CAST(:ids AS text[])) AS id
                """
            ),
            {
                "ids": ids,
                "tenant": tenant,
                "status": status,
                "output_uri": output_uri,
                "webhook": json.dumps({"url": url}),
            },
        )
        assert add_job_events(conn, ids, window_s) == n
    return ids


def attempts(engine: Engine, job_ids: list[str]) -> list[Any]:
    """Every recorded attempt (not pending) of these jobs' events."""
    with engine.connect() as conn:
        return list(
            conn.execute(
                text(
                    """
                    SELECT e.id AS webhook_id, e.job_id, a.attempt, a.state,
                           a.response_status, a.error
                      FROM webhook_attempts AS a
                      JOIN webhook_events AS e ON e.id = a.event_id
                     WHERE e.job_id = ANY(:ids) AND a.state <> 'pending'
                    """
                ),
                {"ids": job_ids},
            )
        )


def all_delivered(engine: Engine, job_ids: list[str]) -> bool:
    done = {a.job_id for a in attempts(engine, job_ids) if a.state == "delivered"}
    return done == set(job_ids)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(free_port())
    r.start()
    yield r
    r.stop()


def test_a_dripping_receiver_does_not_hold_another_tenants_deliveries(
    dispatcher: Path, engine: Engine, receiver: Receiver
) -> None:
    """60 events of one tenant to a receiver dripping a header byte every second (well
    inside any per-read timeout), then 5 of another tenant to a healthy receiver."""
    slow = RawReceiver(dripping(1.0)).start()
    try:
        slow_tenant, _ = new_tenant(engine, "dripped")
        healthy_tenant, _ = new_tenant(engine, "healthy")
        dripped = ended_jobs(engine, slow_tenant, slow.url, 60, window_s=20)
        healthy = ended_jobs(engine, healthy_tenant, receiver.url, 5)

        eventually(lambda: all_delivered(engine, healthy), "the healthy tenant's 5 events", 60)
        # The whole attempt has one deadline: the dripping ones end as timeouts.
        eventually(
            lambda: any(a.error == TIMEOUT for a in attempts(engine, dripped)),
            "a dripped attempt cut at the deadline",
            60,
        )
        assert {r.json()["data"]["id"] for r in receiver.snapshot()} >= set(healthy)
    finally:
        slow.stop()


def test_an_endless_body_is_read_no_further_and_the_attempt_delivered(
    dispatcher: Path, engine: Engine
) -> None:
    endless = RawReceiver(endless_body).start()
    try:
        tenant, _ = new_tenant(engine, "endless")
        (job_id,) = ended_jobs(engine, tenant, endless.url, 1)

        eventually(lambda: all_delivered(engine, [job_id]), "the endless-body attempt", 60)
        (first, *_) = attempts(engine, [job_id])
        assert (first.state, first.response_status) == ("delivered", 200)
    finally:
        endless.stop()


def slow_ok(seconds: float) -> Responder:
    def respond(headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str]]:
        time.sleep(seconds)
        return 200, {}

    return respond


def test_no_attempt_is_posted_twice_when_a_pass_outlasts_a_lease(
    dispatcher: Path, engine: Engine, receiver: Receiver
) -> None:
    """280 events whose receiver takes 3 s (under the 4 s deadline): a dispatcher taking
    200 at once on 16 threads would still be posting when their 34 s lease ran out, and
    would post the rest again. No attempt may reach the receiver twice: it sees at most
    as many posts of an event as the attempts recorded for it (fewer where an attempt
    timed out before the receiver read it, on a loaded machine)."""
    receiver.respond = slow_ok(3.0)
    job_ids: list[str] = []
    for _ in range(4):
        tenant, _ = new_tenant(engine, "lease")
        job_ids += ended_jobs(engine, tenant, receiver.url, 70)

    eventually(lambda: all_delivered(engine, job_ids), "all 280 events delivered", 300)
    recorded = Counter(a.webhook_id for a in attempts(engine, job_ids))
    seen = Counter(r.webhook_id for r in receiver.snapshot())
    assert len(recorded) == 280
    assert {i: (seen[i], n) for i, n in recorded.items() if not 1 <= seen[i] <= n} == {}


def test_every_attempt_is_rendered_afresh_with_a_new_presigned_url(
    dispatcher: Path, engine: Engine, receiver: Receiver
) -> None:
    tenant, secret = new_tenant(engine, "fresh")
    first_seen: set[str] = set()
    lock = threading.Lock()

    def fail_once(headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str]]:
        with lock:
            if headers["webhook-id"] in first_seen:
                return 200, {}
            first_seen.add(headers["webhook-id"])
        return 503, {"retry-after": "2"}  # the next attempt at least 2 s later

    receiver.respond = fail_once
    (job_id,) = ended_jobs(
        engine, tenant, receiver.url, 1, output_uri=f"s3://inferfleet/results/{tenant}/x.json"
    )

    eventually(lambda: all_delivered(engine, [job_id]), "the second attempt", 60)
    first, second = receiver.snapshot()
    one, two = (Webhook(secret).verify(r.body, r.headers) for r in (first, second))
    assert one["data"]["output_url"] != two["data"]["output_url"]
    assert {one["data"]["id"], two["data"]["id"]} == {job_id}


def test_a_cookie_set_by_a_receiver_is_never_sent_back(
    dispatcher: Path, engine: Engine, receiver: Receiver
) -> None:
    answered: Counter[str] = Counter()
    lock = threading.Lock()

    def cookie_then_ok(headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str]]:
        with lock:
            answered[headers["webhook-id"]] += 1
            status = 500 if answered[headers["webhook-id"]] == 1 else 200
        return status, {"set-cookie": "session=tenant-secret; Path=/"}

    receiver.respond = cookie_then_ok
    tenant, _ = new_tenant(engine, "cookies")
    job_ids = ended_jobs(engine, tenant, receiver.url, 3)

    eventually(lambda: all_delivered(engine, job_ids), "every event's second attempt", 60)
    requests = receiver.snapshot()
    assert len(requests) == 6
    assert [r.headers.get("cookie") for r in requests] == [None] * 6
