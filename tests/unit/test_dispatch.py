"""The dispatcher's rules that need no services: the lease, the per-tenant cap, and
what an attempt records when there is no HTTP status."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import create_engine

from inferfleet.errors import ConfigError
from inferfleet.settings import Settings
from scheduler.dispatch import (
    OUTCOMES,
    REFUSED,
    TIMEOUT,
    UNREACHABLE,
    Dispatcher,
    Sender,
    delivery_outcome,
    lease_s,
)
from scheduler.retries import AttemptResult


@pytest.mark.parametrize("timeout_s", [0.5, 10.0, 30.0])
def test_a_lease_outlasts_the_whole_deadline_of_the_attempt_it_covers(timeout_s: float) -> None:
    """Attempts start as soon as they are claimed, so one deadline (plus the time to
    render and record) is the longest a claimed attempt can take."""
    assert lease_s(Settings(webhook_timeout_s=timeout_s)) >= timeout_s + 10


@pytest.mark.parametrize(("threads", "cap"), [(16, 16), (16, 32), (2, 2)])
def test_a_tenant_cap_that_could_take_every_thread_stops_the_dispatcher(
    threads: int, cap: int
) -> None:
    settings = Settings(dispatch_threads=threads, webhook_tenant_inflight=cap)
    engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")  # never used

    with pytest.raises(ConfigError, match="INFERFLEET_WEBHOOK_TENANT_INFLIGHT"):
        Dispatcher(engine, settings)


def sender(proxy: str | None, resolver: Callable[[str], list[str]]) -> Sender:
    return Sender([], resolver, httpx.create_ssl_context(), deadline_s=2, proxy=proxy)


def test_a_refused_target_is_recorded_by_a_generic_reason_without_a_connection() -> None:
    """127.0.0.2 is loopback and not allowlisted: refused before any connection (and
    were the rule broken, the connection would stay on this machine)."""
    result = sender(None, lambda host: ["127.0.0.2"]).post("http://hooks.test:9/x", {}, "{}")

    assert (result.status, result.error) == (None, REFUSED)


def test_a_name_without_addresses_at_delivery_is_unreachable() -> None:
    result = sender(None, lambda host: []).post("http://gone.test:9/x", {}, "{}")

    assert (result.status, result.error) == (None, UNREACHABLE)


def test_with_a_proxy_the_dispatcher_resolves_nothing_itself() -> None:
    def no_lookups(host: str) -> list[str]:
        raise AssertionError(f"{host} was resolved although a proxy is set")

    with socket.socket() as s:  # a port nothing listens on: the proxy is down
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    result = sender(f"http://127.0.0.1:{port}", no_lookups).post("http://hooks.test/x", {}, "{}")

    assert (result.status, result.error) == (None, UNREACHABLE)


def test_a_look_up_that_takes_the_whole_deadline_ends_the_attempt_unsent() -> None:
    """The look-up counts against the attempt's deadline; nothing is sent after it."""

    def slow(host: str) -> list[str]:
        time.sleep(0.5)
        return ["127.0.0.1"]

    quick = Sender(["127.0.0.1"], slow, httpx.create_ssl_context(), deadline_s=0.3)

    result = quick.post("http://hooks.test:9/x", {}, "{}")  # port 9 would refuse

    assert (result.status, result.error) == (None, TIMEOUT)


@pytest.mark.parametrize(
    ("result", "step", "outcome"),
    [
        (AttemptResult(204), "delivered", "delivered"),
        (AttemptResult(503, "the receiver answered 503"), "retry", "retry"),
        (AttemptResult(410, "the receiver answered 410"), "failed", "failed"),
        (AttemptResult(None, TIMEOUT), "retry", "retry"),
        (AttemptResult(None, UNREACHABLE), "failed", "failed"),
        (AttemptResult(None, REFUSED), "retry", "refused"),
        (AttemptResult(None, REFUSED), "failed", "refused"),
        (AttemptResult(204), "superseded", "superseded"),
        (AttemptResult(None, REFUSED), "superseded", "superseded"),
    ],
)
def test_each_attempt_counts_under_one_outcome(
    result: AttemptResult, step: str, outcome: str
) -> None:
    assert delivery_outcome(result, step) == outcome
    assert outcome in OUTCOMES
