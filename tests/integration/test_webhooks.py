"""Webhooks end to end: worker → outbox → a real Celery dispatcher → a real HTTP receiver.

Signatures are checked with the `standardwebhooks` library, not with the project's code.
The dispatcher runs as `python -m scheduler worker -B` on Redis, with short backoffs so
retries happen within a test.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, text
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from inferfleet.ids import new_job_id
from inferfleet.jobs.outbox import add_job_events
from inferfleet.tenants import keys
from tests.integration.conftest import (
    bearer,
    eventually,
    free_port,
    serve_app,
    start_scheduler,
)
from tests.integration.receiver import Receiver, Responder, always

pytestmark = pytest.mark.integration

INPUTS = {
    "transaction_amount": 245.5,
    "merchant_category": "electronics",
    "user_account_age_days": 847,
    "hour_of_day": 14,
}


@pytest.fixture(scope="module")
def dispatcher_metrics() -> str:
    """Where the dispatcher serves `/metrics`."""
    return f"http://127.0.0.1:{free_port()}/metrics"


@pytest.fixture(scope="module")
def dispatcher(
    tmp_path_factory: pytest.TempPathFactory, engine: Engine, dispatcher_metrics: str
) -> Iterator[Path]:
    """The webhook dispatcher as a real Celery worker with embedded beat; yields its log."""
    folder = tmp_path_factory.mktemp("dispatcher")
    env = {
        "INFERFLEET_SCHEDULER_METRICS_PORT": str(httpx.URL(dispatcher_metrics).port),
        "INFERFLEET_REDIS_URL": "redis://127.0.0.1:6379/5",
        "INFERFLEET_WEBHOOK_ALLOWLIST": "127.0.0.1",
        "INFERFLEET_DISPATCH_INTERVAL_S": "0.2",
        "INFERFLEET_WEBHOOK_BACKOFF_BASE_S": "0.2",
        "INFERFLEET_WEBHOOK_BACKOFF_MAX_S": "0.8",
        "INFERFLEET_WEBHOOK_TIMEOUT_S": "3",
    }
    running = start_scheduler(folder, "dispatcher", env)
    try:
        yield running.log_path
    finally:
        running.stop()


@pytest.fixture(scope="module")
def hook_api(settings: Any, engine: Engine, kafka: str, s3: Any) -> Iterator[str]:
    """The API with the receiver's address allowlisted as a webhook target."""
    yield from serve_app(settings.model_copy(update={"webhook_allowlist": ["127.0.0.1"]}))


class Tenant:
    """A tenant of one test: its API client and webhook secret."""

    def __init__(self, engine: Engine, api_url: str, name: str) -> None:
        with engine.begin() as conn:
            made = keys.create_key(conn, name, "jobs")
        self.name = name
        self.secret = made.webhook_secret
        self.client = httpx.Client(base_url=api_url, headers=bearer(made.key), timeout=30)

    def submit(self, model: str, webhook: dict[str, Any], **extra: Any) -> str:
        r = self.client.post(
            "/v1/jobs", json={"model": model, "inputs": INPUTS, "webhook": webhook, **extra}
        )
        assert r.status_code == 202, r.text
        return str(r.json()["id"])

    def deliveries(self, job_id: str) -> list[dict[str, Any]]:
        r = self.client.get(f"/v1/jobs/{job_id}/deliveries")
        assert r.status_code == 200, r.text
        items: list[dict[str, Any]] = r.json()["items"]
        return items

    def job(self, job_id: str) -> dict[str, Any]:
        r = self.client.get(f"/v1/jobs/{job_id}")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body


@pytest.fixture
def tenant(engine: Engine, hook_api: str) -> Iterator[Tenant]:
    t = Tenant(engine, hook_api, f"hooks-{os.urandom(4).hex()}")
    yield t
    t.client.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(free_port())
    yield r
    r.stop()


def verify(secret: str, request: Any) -> dict[str, Any]:
    """The payload, if the request carries a valid Standard Webhooks signature."""
    payload: dict[str, Any] = Webhook(secret).verify(request.body, request.headers)
    return payload


def delivered(items: list[dict[str, Any]]) -> bool:
    return any(d["state"] == "delivered" for d in items)


def event_state(engine: Engine, job_id: str) -> str | None:
    with engine.connect() as conn:
        state: str | None = conn.execute(
            text("SELECT state FROM webhook_events WHERE job_id = :id"), {"id": job_id}
        ).scalar_one_or_none()
        return state


def past_deadline(engine: Engine, job_id: str) -> bool:
    with engine.connect() as conn:
        passed: bool = conn.execute(
            text("SELECT deadline <= now() FROM jobs WHERE id = :id"), {"id": job_id}
        ).scalar_one()
        return passed


def attempts_counted(metrics_url: str) -> dict[str, float]:
    """`inferfleet_webhook_delivery_attempts_total` by outcome, as the dispatcher serves it
    (the fleet's totals in Redis, which other tests' dispatchers may add to)."""
    text = httpx.get(metrics_url, timeout=5).text
    return {
        sample.labels["outcome"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "inferfleet_webhook_delivery_attempts"
        for sample in family.samples
        if sample.name.endswith("_total")
    }


def served(metrics_url: str) -> dict[str, float] | None:
    try:
        return attempts_counted(metrics_url)
    except httpx.TransportError:
        return None  # not serving yet


def fail_first(n: int, status: int) -> Responder:
    """Answer `status` to the first `n` requests of each webhook-id, then 200."""
    seen: Counter[str] = Counter()
    lock = threading.Lock()

    def respond(headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str]]:
        with lock:
            seen[headers["webhook-id"]] += 1
            return (status if seen[headers["webhook-id"]] <= n else 200), {}

    return respond


def test_receiver_down_then_up_gets_every_event_once_with_a_valid_signature(
    dispatcher: Path, tenant: Tenant, receiver: Receiver, publish_model, start_worker
) -> None:
    model = publish_model()
    start_worker(model.name).wait_ready()
    ids = [tenant.submit(model.name, {"url": receiver.url}) for _ in range(20)]

    # Nothing listens yet: every event collects failed attempts.
    eventually(
        lambda: all(sum(d["state"] == "failed" for d in tenant.deliveries(i)) >= 2 for i in ids),
        "two failed attempts per event while the receiver is down",
    )
    receiver.start()
    eventually(
        lambda: all(delivered(tenant.deliveries(i)) for i in ids),
        "every event delivered once the receiver is up",
    )

    got = receiver.snapshot()
    per_id = Counter(r.webhook_id for r in got)
    assert all(n == 1 for n in per_id.values()), per_id
    assert len(per_id) == len(ids)
    for request in got:
        payload = verify(tenant.secret, request)
        assert payload["type"] == "job.succeeded"
        job = tenant.job(payload["data"]["id"])
        assert payload["data"] == job
        attempts = tenant.deliveries(job["id"])
        assert {a["webhook_id"] for a in attempts} == {request.webhook_id}
        assert [a["attempt"] for a in attempts] == list(range(1, len(attempts) + 1))
        assert [a["state"] for a in attempts] == ["failed"] * (len(attempts) - 1) + ["delivered"]
        assert attempts[-1]["response_status"] == 200
        assert all(a["error"] for a in attempts[:-1])


def test_receiver_answering_500_then_200_records_the_failures_then_one_success(
    dispatcher: Path,
    dispatcher_metrics: str,
    tenant: Tenant,
    receiver: Receiver,
    engine: Engine,
    publish_model,
    start_worker,
) -> None:
    receiver.respond = fail_first(2, 500)
    receiver.start()
    model = publish_model()
    start_worker(model.name).wait_ready()
    before = eventually(lambda: served(dispatcher_metrics), "the dispatcher's /metrics")
    job_id = tenant.submit(model.name, {"url": receiver.url})

    eventually(lambda: delivered(tenant.deliveries(job_id)), "the third attempt to succeed")
    attempts = tenant.deliveries(job_id)
    assert [(a["attempt"], a["state"], a["response_status"]) for a in attempts] == [
        (1, "failed", 500),
        (2, "failed", 500),
        (3, "delivered", 200),
    ]
    requests = receiver.requests_for(attempts[0]["webhook_id"])
    assert [r.answered for r in requests] == [500, 500, 200]
    for request in requests:  # each attempt is signed afresh, and each signature holds
        assert verify(tenant.secret, request)["data"]["id"] == job_id
    assert event_state(engine, job_id) == "delivered"
    counted = attempts_counted(dispatcher_metrics)
    assert counted["retry"] >= before["retry"] + 2
    assert counted["delivered"] >= before["delivered"] + 1


def test_410_stops_retries_and_redelivery_keeps_the_webhook_id(
    dispatcher: Path, tenant: Tenant, receiver: Receiver, engine: Engine, publish_model
) -> None:
    receiver.respond = always(410)
    receiver.start()
    model = publish_model()
    job_id = tenant.submit(model.name, {"url": receiver.url})
    assert tenant.client.post(f"/v1/jobs/{job_id}/cancel").status_code == 200

    eventually(lambda: event_state(engine, job_id) == "failed", "the event to fail on 410")
    attempts = tenant.deliveries(job_id)
    assert [(a["state"], a["response_status"]) for a in attempts] == [("failed", 410)]

    receiver.respond = always(200)
    r = tenant.client.post(f"/v1/jobs/{job_id}/deliveries/redeliver")
    assert r.status_code == 202, r.text
    eventually(lambda: delivered(tenant.deliveries(job_id)), "the redelivery")
    attempts = tenant.deliveries(job_id)
    assert [(a["attempt"], a["state"]) for a in attempts] == [(1, "failed"), (2, "delivered")]
    requests = receiver.requests_for(attempts[0]["webhook_id"])
    assert len(requests) == 2
    assert {verify(tenant.secret, r)["type"] for r in requests} == {"job.cancelled"}


def test_an_event_still_refused_when_its_retry_window_ends_is_failed(
    dispatcher: Path,
    tenant: Tenant,
    receiver: Receiver,
    engine: Engine,
    publish_model,
    start_worker,
) -> None:
    receiver.respond = always(503)
    receiver.start()
    model = publish_model()
    start_worker(model.name, INFERFLEET_WEBHOOK_RETRY_WINDOW_S="2").wait_ready()
    job_id = tenant.submit(model.name, {"url": receiver.url})

    eventually(lambda: event_state(engine, job_id) == "failed", "the retry window to run out")
    attempts = tenant.deliveries(job_id)
    assert len(attempts) >= 2
    assert {a["state"] for a in attempts} == {"failed"}
    assert {a["response_status"] for a in attempts} == {503}
    assert len(receiver.requests_for(attempts[0]["webhook_id"])) == len(attempts)


def test_cancel_expiry_and_the_events_filter(
    dispatcher: Path,
    tenant: Tenant,
    receiver: Receiver,
    engine: Engine,
    publish_model,
    start_worker,
) -> None:
    receiver.start()
    model = publish_model()
    cancelled = tenant.submit(model.name, {"url": receiver.url})
    assert tenant.client.post(f"/v1/jobs/{cancelled}/cancel").status_code == 200
    expiring = tenant.submit(model.name, {"url": receiver.url}, ttl_seconds=1)
    filtered = tenant.submit(model.name, {"url": receiver.url, "events": ["job.failed"]})
    eventually(lambda: past_deadline(engine, expiring), "the deadline to pass before any worker")
    start_worker(model.name).wait_ready()

    for job_id in (cancelled, expiring):
        eventually(lambda j=job_id: delivered(tenant.deliveries(j)), f"the event of {job_id}")
    eventually(lambda: tenant.job(filtered)["status"] == "succeeded", "the filtered job")
    # Events are written with the result, so a finished job without one has none.
    assert tenant.deliveries(filtered) == []
    types = {verify(tenant.secret, r)["data"]["id"]: r.json()["type"] for r in receiver.snapshot()}
    assert types == {cancelled: "job.cancelled", expiring: "job.expired"}
    assert tenant.job(expiring)["status"] == "expired"


def test_a_rotated_secret_signs_beside_the_previous_one(
    dispatcher: Path,
    tenant: Tenant,
    receiver: Receiver,
    publish_model,
    api_url: str,
    admin_key: str,
) -> None:
    receiver.start()
    rotated = httpx.post(
        f"{api_url}/v1/tenants/{tenant.name}/webhook-secret", headers=bearer(admin_key)
    )
    assert rotated.status_code == 200, rotated.text
    new_secret = rotated.json()["webhook_secret"]
    assert new_secret.startswith("whsec_")
    assert new_secret != tenant.secret

    model = publish_model()
    job_id = tenant.submit(model.name, {"url": receiver.url})
    tenant.client.post(f"/v1/jobs/{job_id}/cancel")
    eventually(lambda: delivered(tenant.deliveries(job_id)), "the cancel event")
    (request,) = receiver.snapshot()
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    assert verify(tenant.secret, request)["data"]["id"] == job_id
    assert verify(new_secret, request)["data"]["id"] == job_id
    with pytest.raises(WebhookVerificationError):
        verify("whsec_" + "A" * 32, request)


def test_another_tenant_gets_404_for_deliveries(
    dispatcher: Path, tenant: Tenant, engine: Engine, hook_api: str, publish_model
) -> None:
    model = publish_model()
    job_id = tenant.submit(model.name, {"url": "http://127.0.0.1:9/hooks"})
    other = Tenant(engine, hook_api, f"other-{os.urandom(4).hex()}")
    try:
        assert other.client.get(f"/v1/jobs/{job_id}/deliveries").status_code == 404
        redeliver = other.client.post(f"/v1/jobs/{job_id}/deliveries/redeliver")
        assert redeliver.status_code == 404
    finally:
        other.client.close()
    assert tenant.deliveries(job_id) == []
    assert tenant.client.post(f"/v1/jobs/{job_id}/deliveries/redeliver").status_code == 409


def test_an_event_that_cannot_be_signed_fails_alone(
    dispatcher: Path, tenant: Tenant, receiver: Receiver, engine: Engine, publish_model
) -> None:
    """An event of a tenant without a secret is never sent unsigned, and does not stop
    the events beside it."""
    receiver.start()
    model = publish_model()
    ghost_job = new_job_id()
    with engine.begin() as conn:
        conn.execute(
            text(
                """
                INSERT INTO jobs (id, tenant, model, version, status, lane, inputs, webhook,
                                  completed_at)
                VALUES (:id, :tenant, :model, 1, 'cancelled', 'interactive', '{}',
                        CAST(:webhook AS jsonb), now())
                """
            ),
            {
                "id": ghost_job,
                "tenant": f"ghost-{os.urandom(4).hex()}",
                "model": model.name,
                "webhook": json.dumps({"url": receiver.url}),
            },
        )
        assert add_job_events(conn, [ghost_job], 3600.0) == 1
    job_id = tenant.submit(model.name, {"url": receiver.url})
    tenant.client.post(f"/v1/jobs/{job_id}/cancel")

    eventually(lambda: delivered(tenant.deliveries(job_id)), "the signable event")
    with engine.connect() as conn:

        def ghost_attempts() -> list[Any]:
            return list(
                conn.execute(
                    text(
                        """
                        SELECT a.state, a.error FROM webhook_attempts AS a
                          JOIN webhook_events AS e ON e.id = a.event_id
                         WHERE e.job_id = :id AND a.state <> 'pending'
                        """
                    ),
                    {"id": ghost_job},
                )
            )

        eventually(lambda: ghost_attempts() != [], "the unsignable attempt to be recorded")
        state, error = ghost_attempts()[0]
    assert state == "failed"
    assert "has no webhook secret" in error
    assert {r.json()["data"]["id"] for r in receiver.snapshot()} == {job_id}
