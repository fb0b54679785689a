"""api.middleware: request ids and body limits, on a tiny in-process Starlette app."""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from api.middleware import BodyLimitMiddleware, RequestIdMiddleware

with warnings.catch_warnings():
    # Starlette warns at import when the test client runs on httpx rather than httpx2;
    # the client behaves the same for these tests.
    warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

LIMIT = 100
BULK_LIMIT = 1000
GENERATED = re.compile(r"^req_[0-9a-f]{32}$")


def limit_for(path: str) -> int:
    return BULK_LIMIT if path == "/bulk" else LIMIT


class Echo:
    """The app behind the middleware: reports the body length and request id it saw."""

    def __init__(self) -> None:
        self.calls = 0
        self.started = False

    async def endpoint(self, request: Request) -> JSONResponse:
        self.calls += 1
        body = await request.body()
        return JSONResponse({"length": len(body), "request_id": request.state.request_id})

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self.started = True
        yield


@pytest.fixture
def echo() -> Echo:
    return Echo()


@pytest.fixture
def client(echo: Echo) -> TestClient:
    app = Starlette(
        routes=[
            Route("/jobs", echo.endpoint, methods=["GET", "POST", "PUT", "PATCH"]),
            Route("/bulk", echo.endpoint, methods=["POST"]),
        ],
        lifespan=echo.lifespan,
    )
    # The same order as api.app.create_app: the request id wraps the body limit.
    app.add_middleware(BodyLimitMiddleware, limit_for=limit_for)
    app.add_middleware(RequestIdMiddleware)
    return TestClient(app)


def chunks(total: int, size: int = 10) -> Iterator[bytes]:
    """A body sent without Content-Length, `size` bytes at a time."""
    for start in range(0, total, size):
        yield b"x" * min(size, total - start)


# Request id


@pytest.mark.parametrize("sent", ["abc", "req_123", "A.b_c:d-1", "0" * 128])
def test_a_well_formed_request_id_is_kept_and_echoed(client: TestClient, sent: str) -> None:
    response = client.get("/jobs", headers={"X-Request-ID": sent})

    assert response.status_code == 200
    assert response.headers["x-request-id"] == sent
    assert response.json()["request_id"] == sent


@pytest.mark.parametrize(
    "sent",
    [
        pytest.param(None, id="absent"),
        pytest.param("", id="empty"),
        pytest.param("has space", id="space"),
        pytest.param("a;b", id="semicolon"),
        pytest.param("<script>", id="markup"),
        pytest.param("0" * 129, id="too-long"),
    ],
)
def test_a_missing_or_malformed_request_id_is_replaced(
    client: TestClient, sent: str | None
) -> None:
    headers = {} if sent is None else {"X-Request-ID": sent}

    response = client.get("/jobs", headers=headers)

    request_id = response.headers["x-request-id"]
    assert GENERATED.match(request_id)
    assert response.json()["request_id"] == request_id


def test_each_request_gets_its_own_generated_id(client: TestClient) -> None:
    first = client.get("/jobs").headers["x-request-id"]
    second = client.get("/jobs").headers["x-request-id"]

    assert first != second


def test_the_lifespan_passes_through_both_middlewares(echo: Echo, client: TestClient) -> None:
    with client:
        assert echo.started


# Body limit


def assert_too_large(response: httpx.Response) -> None:
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem == {
        "type": "https://inferfleet.dev/problems/content-too-large",
        "title": "Content Too Large",
        "status": 413,
        "detail": f"the request body is larger than {LIMIT} bytes",
        "request_id": response.headers["x-request-id"],
        "errors": [],
    }
    assert GENERATED.match(problem["request_id"])


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_a_declared_body_over_the_limit_is_refused_unread(
    client: TestClient, echo: Echo, method: str
) -> None:
    response = client.request(method, "/jobs", content=b"x" * (LIMIT + 1))

    assert_too_large(response)
    assert echo.calls == 0


def test_a_streamed_body_over_the_limit_is_refused(client: TestClient, echo: Echo) -> None:
    response = client.post("/jobs", content=chunks(LIMIT * 3))

    assert_too_large(response)
    assert echo.calls == 0  # the body is read before the app; the app never sees it


def test_a_refusal_carries_the_clients_request_id(client: TestClient) -> None:
    response = client.post(
        "/jobs", content=b"x" * (LIMIT + 1), headers={"X-Request-ID": "client-42"}
    )

    assert response.status_code == 413
    assert response.headers["x-request-id"] == "client-42"
    assert response.json()["request_id"] == "client-42"


@pytest.mark.parametrize(
    ("length", "streamed"),
    [
        pytest.param(LIMIT, False, id="declared-at-limit"),
        pytest.param(0, False, id="empty"),
        pytest.param(LIMIT, True, id="streamed-at-limit"),
    ],
)
def test_a_body_within_the_limit_passes_through(
    client: TestClient, length: int, streamed: bool
) -> None:
    content = chunks(length) if streamed else b"x" * length

    response = client.post("/jobs", content=content)

    assert response.status_code == 200
    assert response.json()["length"] == length


def test_the_limit_is_chosen_by_path(client: TestClient) -> None:
    assert client.post("/bulk", content=b"x" * BULK_LIMIT).json()["length"] == BULK_LIMIT
    assert client.post("/bulk", content=chunks(BULK_LIMIT + 1)).status_code == 413


def test_a_get_is_never_limited(client: TestClient) -> None:
    response = client.request("GET", "/jobs", content=b"x" * (LIMIT * 5))

    assert response.status_code == 200
    assert response.json()["length"] == LIMIT * 5


class Submit(BaseModel):
    x: str


def test_a_streamed_body_over_the_limit_is_refused_by_a_fastapi_route() -> None:
    app = FastAPI()

    @app.post("/jobs")
    def submit(body: Submit) -> dict[str, int]:
        return {"length": len(body.x)}

    app.add_middleware(BodyLimitMiddleware, limit_for=limit_for)
    app.add_middleware(RequestIdMiddleware)
    body = json.dumps({"x": "a" * LIMIT * 3}).encode()

    response = TestClient(app).post("/jobs", content=iter([body[:50], body[50:]]))

    assert response.status_code == 413
