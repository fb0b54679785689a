"""api.plumbing.ratelimit and the checks every /v1 route runs first, on in-memory counters."""

from __future__ import annotations

import asyncio
import logging
import re
import warnings
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any, cast

import pytest
from fastapi import Depends, FastAPI, Header
from limits import parse
from limits.aio.storage import MemoryStorage
from limits.errors import StorageError
from pydantic import BaseModel

from api.app import create_app
from api.plumbing import problems
from api.plumbing.deps import (
    Principal,
    Services,
    admin_within_limits,
    caller_within_limits,
    get_principal,
)
from api.plumbing.metrics import ApiMetrics
from api.plumbing.middleware import BodyLimitMiddleware, RequestIdMiddleware
from api.plumbing.ratelimit import FALLBACK_S, RateLimiter, parse_rate, retry_after
from inferfleet.caching import ChangeCache
from inferfleet.errors import ConfigError
from inferfleet.settings import load_settings
from inferfleet.tenants.keys import KeyRecord, Scope

with warnings.catch_warnings():
    # Starlette warns at import when the test client runs on httpx rather than httpx2;
    # the client behaves the same for these tests.
    warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient


@pytest.mark.parametrize(
    ("reset_at", "now", "expected"),
    [
        (100.0, 99.0, 1),
        (100.0, 99.9, 1),
        (100.0, 100.0, 1),  # already free: still at least 1
        (100.0, 101.0, 1),  # the clock passed it
        (100.0, 98.9, 2),
        (160.0, 100.5, 60),
        (3700.0, 100.0, 3600),
    ],
)
def test_retry_after_rounds_up_to_whole_seconds_and_is_at_least_1(
    reset_at: float, now: float, expected: int
) -> None:
    assert retry_after(reset_at, now) == expected


@pytest.mark.parametrize("text", ["5/second", "200 per second", "10/2 minutes"])
def test_a_rate_in_the_limits_notation_is_read(text: str) -> None:
    assert parse_rate(text) == parse(text)


@pytest.mark.parametrize("text", ["", "fast", "5/fortnight", "5/second;100/minute"])
def test_a_malformed_rate_fails_naming_the_variable_and_value(text: str) -> None:
    with pytest.raises(ConfigError, match=f"INFERFLEET_RATE_LIMIT has value {text!r}"):
        parse_rate(text)


def test_create_app_refuses_a_malformed_rate() -> None:
    with pytest.raises(ConfigError, match="INFERFLEET_RATE_LIMIT"):
        create_app(load_settings(rate_limit="lots"))


def test_each_key_has_its_own_window() -> None:
    async def hits() -> tuple[list[int | None], int | None]:
        limiter = RateLimiter(MemoryStorage(), parse("5/second"))
        return [await limiter.hit("key_a") for _ in range(6)], await limiter.hit("key_b")

    first, other = asyncio.run(hits())

    assert first == [None] * 5 + [1]
    assert other is None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FailingStorage(MemoryStorage):
    """Counters that fail like an unreachable Redis, until told otherwise."""

    def __init__(self) -> None:
        super().__init__()
        self.down = True
        self.calls = 0

    async def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        self.calls += 1
        if self.down:
            raise StorageError(ConnectionError("Connection refused"))
        return await super().acquire_entry(key, limit, expiry, amount)


def test_requests_are_counted_in_memory_while_the_storage_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="api.plumbing.ratelimit")
    asyncio.run(count_through_an_outage(caplog))


async def count_through_an_outage(caplog: pytest.LogCaptureFixture) -> None:
    storage, clock, metrics = FailingStorage(), Clock(), ApiMetrics()
    limiter = RateLimiter(storage, parse("2/minute"), clock=clock, metrics=metrics)

    during = [(await limiter.hit("key_a")) for _ in range(3)] + [(await limiter.hit("key_b"))]

    assert during[:2] == [None, None]
    assert during[2] is not None
    assert 1 <= during[2] <= 60
    assert during[3] is None  # another key has its own window
    assert storage.calls == 1  # asked once, then left alone for a while
    assert caplog.text.count("rate limits are counted in this process only") == 1
    assert metrics.registry.get_sample_value("inferfleet_api_rate_limit_fallback") == 1
    assert metrics.registry.get_sample_value("inferfleet_api_rate_limit_fallbacks_total") == 1

    clock.now += FALLBACK_S
    still_down = await limiter.hit("key_c")

    assert still_down is None
    assert storage.calls == 2
    assert caplog.text.count("rate limits are counted in this process only") == 1

    storage.down = False
    clock.now += FALLBACK_S
    after = [(await limiter.hit("key_a")) for _ in range(3)]

    assert after[:2] == [None, None]
    assert after[2] is not None
    assert "rate limits are counted in Redis again" in caplog.text
    assert metrics.registry.get_sample_value("inferfleet_api_rate_limit_fallback") == 0


# The checks every /v1 route runs first, with the real dependencies.


ADMIN_PREFIXES = ("/v1/models", "/v1/keys", "/v1/tenants", "/v1/schedules")


class Refusing:
    """A limiter whose every key is past its rate."""

    rate = parse("1/minute")

    async def hit(self, key_id: str) -> int:
        return 30


def v1_operations(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path with its parameters filled in) of every /v1 operation."""
    return [
        (method.upper(), re.sub(r"\{[^}]+\}", "x", path))
        for path, operations in app.openapi()["paths"].items()
        if path.startswith("/v1/")
        for method in operations
    ]


def test_every_v1_route_checks_auth_then_size_then_rate_before_anything_else() -> None:
    app = create_app(load_settings(max_body_bytes=10, max_bulk_body_bytes=10))
    app.dependency_overrides[get_principal] = fake_principal
    app.state.services = replace(stub_services(), limiter=cast(Any, Refusing()))
    client = TestClient(app)
    operations = v1_operations(app)
    large = {"x": "a" * 20}

    assert ("POST", "/v1/jobs") in operations
    for method, path in operations:
        admin = path.startswith(ADMIN_PREFIXES)
        sized = method in ("POST", "PUT", "PATCH")
        answers = {
            key: client.request(
                method, path, json=large if sized else None, headers=bearer(key) if key else {}
            ).status_code
            for key in (None, "jobs-a", "admin")
        }

        assert answers == {
            None: 401,
            "jobs-a": 403 if admin else 413 if sized else 429,
            "admin": 413 if sized else 429,
        }, (method, path)


class Body(BaseModel):
    x: str


def fake_principal(authorization: Annotated[str | None, Header()] = None) -> Principal:
    """Keys `jobs-a`, `jobs-b` (one tenant) and `admin`; anything else is 401."""
    key = (authorization or "").removeprefix("Bearer ")
    if key not in ("jobs-a", "jobs-b", "admin"):
        raise problems.ProblemError(401, "Unauthorized", "send an API key")
    return Principal(tenant="t", scope="admin" if key == "admin" else "jobs", key_id=key)


class FakeKeys:
    """The same keys as `fake_principal`, as the app's key lookup sees them."""

    async def __call__(self, key: str) -> KeyRecord | None:
        if key not in ("jobs-a", "jobs-b", "admin"):
            return None
        scope: Scope = "admin" if key == "admin" else "jobs"
        return KeyRecord(
            id=key, tenant="t", scope=scope, created_at=datetime.now(UTC), revoked_at=None
        )

    def clear(self) -> None:
        pass


LIMIT = 100


def stub_services() -> Services:
    return Services(
        settings=load_settings(),
        engine=cast(Any, None),
        db=cast(Any, None),
        reads=cast(Any, None),
        queue=cast(Any, None),
        metrics=ApiMetrics(),
        s3=None,
        limiter=RateLimiter(MemoryStorage(), parse("3/minute")),
        admission=cast(Any, None),
        submits=cast(Any, None),
        keys=FakeKeys(),
        versions=ChangeCache(0, 1),
        jobs=cast(Any, None),
        waiters=cast(Any, None),
    )


@pytest.fixture
def services() -> Services:
    return stub_services()


@pytest.fixture
def client(services: Services) -> TestClient:
    app = FastAPI()

    @app.post("/v1/jobs", dependencies=[Depends(caller_within_limits)])
    def jobs(body: Body) -> dict[str, str]:
        return {"x": body.x}

    @app.post("/v1/keys", dependencies=[Depends(admin_within_limits)])
    def keys(body: Body) -> dict[str, str]:
        return {"x": body.x}

    app.dependency_overrides[get_principal] = fake_principal
    app.state.services = services
    problems.install(app, retry_after_s=5)
    app.add_middleware(BodyLimitMiddleware, limit_for=lambda path: LIMIT)
    app.add_middleware(RequestIdMiddleware)
    return TestClient(app)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


LARGE = {"x": "a" * LIMIT}


def refused(services: Services, reason: str) -> float:
    value = services.metrics.registry.get_sample_value(
        "inferfleet_api_requests_refused_total", {"reason": reason}
    )
    return value or 0.0


def test_auth_answers_before_the_size(client: TestClient) -> None:
    assert client.post("/v1/jobs", json=LARGE).status_code == 401
    assert client.post("/v1/keys", json=LARGE, headers=bearer("jobs-a")).status_code == 403
    assert client.post("/v1/keys", json=LARGE, headers=bearer("admin")).status_code == 413


def test_the_size_answers_before_the_rate_and_does_not_count(
    client: TestClient, services: Services
) -> None:
    for _ in range(4):
        assert client.post("/v1/jobs", json=LARGE, headers=bearer("jobs-a")).status_code == 413

    assert client.post("/v1/jobs", json={"x": "ok"}, headers=bearer("jobs-a")).status_code == 200
    assert refused(services, "too_large") == 4


def test_past_the_rate_a_key_gets_429_with_retry_after_and_other_keys_go_on(
    client: TestClient, services: Services
) -> None:
    answers = [
        client.post("/v1/jobs", json={"x": "ok"}, headers=bearer("jobs-a")) for _ in range(4)
    ]

    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    last = answers[-1]
    assert last.headers["content-type"] == "application/problem+json"
    assert 1 <= int(last.headers["retry-after"]) <= 60
    assert last.json()["title"] == "Too Many Requests"
    assert client.post("/v1/jobs", json={"x": "ok"}, headers=bearer("jobs-b")).status_code == 200
    assert refused(services, "rate_limited") == 1


def test_the_rate_answers_before_validation(client: TestClient) -> None:
    for _ in range(3):
        client.post("/v1/jobs", json={"x": "ok"}, headers=bearer("jobs-a"))

    assert client.post("/v1/jobs", json={"y": 1}, headers=bearer("jobs-a")).status_code == 429
    assert client.post("/v1/jobs", json={"y": 1}, headers=bearer("jobs-b")).status_code == 422
