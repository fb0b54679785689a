"""Webhook targets against the real stack: the API refuses internal addresses at submit;
the dispatcher (its real `Dispatcher`, in this process, on the test database) resolves a
name once and connects only to what it checked, and the deliveries list keeps only a
generic reason.

The system resolver is replaced, in this process, by one that answers names of the
tests' own (`*.test`) from a table, and that can answer differently on its second call:
what DNS rebinding does. Every answer is a 127.0.0.0/8 address, or one that must be
refused before any connection, so nothing leaves the machine.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text

from inferfleet.settings import Settings
from scheduler.dispatch import REFUSED, UNREACHABLE, Dispatcher
from tests.integration.conftest import eventually, free_port, serve_app
from tests.integration.receiver import Receiver
from tests.integration.test_webhooks import INPUTS, Tenant, delivered

pytestmark = pytest.mark.integration

REAL_GETADDRINFO = socket.getaddrinfo
REAL_CONNECT = socket.socket.connect


class FakeDNS:
    """Answers `*.test` names from `answers`: the n-th call gets the n-th list (the last
    one for every later call), and counts them; a name without answers does not
    resolve. Other names go to the real resolver."""

    def __init__(self) -> None:
        self.answers: dict[str, list[list[str]]] = {}
        self.calls: dict[str, int] = {}
        self.delay_s: dict[str, float] = {}

    def getaddrinfo(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if not name.endswith(".test"):
            return REAL_GETADDRINFO(host, port, *args, **kwargs)
        lists = self.answers.get(name, [])
        if not lists:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        n = self.calls.get(name, 0)
        self.calls[name] = n + 1
        time.sleep(self.delay_s.get(name, 0.0))
        found = lists[min(n, len(lists) - 1)]
        family = socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (a, port or 0)) for a in found]


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDNS]:
    """The fake resolver, and a guard that makes any connection of this process to an
    address outside 127.0.0.0/8 fail (and the test with it), whatever the code does."""
    fake = FakeDNS()
    outside: list[Any] = []

    def loopback_only(sock: socket.socket, address: Any) -> None:
        host = address[0] if isinstance(address, tuple) else None
        if host is not None and not ipaddress.ip_address(host).is_loopback:
            outside.append(address)
            raise ConnectionRefusedError(f"test guard: {address} is outside 127.0.0.0/8")
        REAL_CONNECT(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", fake.getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", loopback_only)
    yield fake
    assert outside == [], f"connections were tried outside 127.0.0.0/8: {outside}"


@pytest.fixture(scope="module")
def target_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "webhook_allowlist": ["127.0.0.1"],
            "webhook_timeout_s": 3.0,
            "webhook_backoff_base_s": 0.2,
            "webhook_backoff_max_s": 0.4,
        }
    )


@pytest.fixture(scope="module")
def target_api(target_settings: Settings, engine: Engine, kafka: str, s3: Any) -> Iterator[str]:
    yield from serve_app(target_settings)


@pytest.fixture
def tenant(engine: Engine, target_api: str) -> Iterator[Tenant]:
    t = Tenant(engine, target_api, f"targets-{os.urandom(4).hex()}")
    yield t
    t.client.close()


@pytest.fixture
def dispatcher(engine: Engine, target_settings: Settings) -> Iterator[Dispatcher]:
    d = Dispatcher(engine, target_settings)
    yield d
    d.drain()


def cancelled_with_webhook(tenant: Tenant, model: str, url: str) -> str:
    """A job whose `job.cancelled` event goes to `url` (no worker needed)."""
    job_id = tenant.submit(model, {"url": url})
    assert tenant.client.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
    return job_id


def ended(dispatcher: Dispatcher, tenant: Tenant, job_id: str) -> list[dict[str, Any]]:
    """Run the dispatcher until the job's first attempt is recorded; its attempts."""

    def recorded() -> list[dict[str, Any]]:
        dispatcher.top_up()
        items = tenant.deliveries(job_id)
        return items if any(d["state"] != "pending" for d in items) else []

    result: list[dict[str, Any]] = eventually(recorded, f"an attempt of {job_id}")
    return result


def test_a_cgnat_address_is_refused_at_submit(
    tenant: Tenant, publish_model, engine: Engine
) -> None:
    model = publish_model()
    url = "http://100.100.100.200/latest/meta-data/"

    try:
        r = tenant.client.post(
            "/v1/jobs", json={"model": model.name, "inputs": INPUTS, "webhook": {"url": url}}
        )
    finally:
        # Were it accepted, the job must never end and fire its webhook (a sweep's expiry,
        # say) where a dispatcher of another test could post it outside 127.0.0.0/8.
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM jobs WHERE model = :m"), {"m": model.name})

    assert r.status_code == 422, r.text
    assert "carrier-grade NAT" in r.text


def test_a_slow_look_up_at_submit_is_given_up_after_its_wait(
    dns: FakeDNS, tenant: Tenant, target_settings: Settings, publish_model
) -> None:
    """The answer (a refused address) comes after INFERFLEET_WEBHOOK_DNS_TIMEOUT_S: the
    API has stopped waiting and accepted the URL, as it accepts a name that does not
    resolve; the dispatcher judges it at each attempt."""
    model = publish_model()
    dns.answers["slow.test"] = [["127.0.0.2"]]
    dns.delay_s["slow.test"] = target_settings.webhook_dns_timeout_s + 4

    job_id = tenant.submit(model.name, {"url": "http://slow.test:8080/hooks"})

    assert tenant.job(job_id)["status"] == "queued"
    assert dns.calls["slow.test"] == 1


def test_a_rebinding_name_reaches_only_the_address_that_was_checked(
    dns: FakeDNS, tenant: Tenant, dispatcher: Dispatcher, publish_model
) -> None:
    """First answer 127.0.0.1 (allowlisted, checked); every later answer 127.0.0.2 (not
    allowlisted), where another receiver listens on the same port."""
    port = free_port()
    checked, rebound = Receiver(port), Receiver(port, host="127.0.0.2")
    checked.start()
    rebound.start()
    try:
        model = publish_model()
        job_id = cancelled_with_webhook(tenant, model.name, f"http://rebind.test:{port}/hooks")
        dns.answers["rebind.test"] = [["127.0.0.1"], ["127.0.0.2"]]

        attempts = ended(dispatcher, tenant, job_id)

        assert delivered(attempts), attempts
        assert dns.calls["rebind.test"] == 1
        (request,) = checked.snapshot()
        assert request.headers["host"] == f"rebind.test:{port}"
        assert rebound.snapshot() == []
    finally:
        checked.stop()
        rebound.stop()


@pytest.mark.parametrize(
    ("answers", "reason"),
    [
        ([["10.0.0.5"]], REFUSED),  # an internal address: never connected to
        ([["100.100.100.200"]], REFUSED),
        ([["127.0.0.3"]], REFUSED),  # loopback, not allowlisted
        ([], UNREACHABLE),  # does not resolve at delivery
    ],
)
def test_the_deliveries_list_shows_a_generic_reason_for_a_refused_target(
    dns: FakeDNS,
    tenant: Tenant,
    dispatcher: Dispatcher,
    publish_model,
    answers: list[list[str]],
    reason: str,
) -> None:
    model = publish_model()
    job_id = cancelled_with_webhook(tenant, model.name, "http://internal.test:8080/hooks")
    dns.answers["internal.test"] = answers

    (first, *_) = ended(dispatcher, tenant, job_id)

    assert (first["state"], first["response_status"], first["error"]) == ("failed", None, reason)


def test_a_closed_port_shows_unreachable_not_the_connection_error(
    tenant: Tenant, dispatcher: Dispatcher, publish_model
) -> None:
    model = publish_model()
    job_id = cancelled_with_webhook(tenant, model.name, f"http://127.0.0.1:{free_port()}/h")

    (first, *_) = ended(dispatcher, tenant, job_id)

    assert (first["state"], first["response_status"], first["error"]) == (
        "failed",
        None,
        UNREACHABLE,
    )
