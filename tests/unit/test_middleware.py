"""api.plumbing.middleware: request ids and body limits, on tiny in-process Starlette and
FastAPI apps."""

from __future__ import annotations

import asyncio
import json
import re
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Annotated

import pytest
from fastapi import Depends, FastAPI, Header
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from api.plumbing import problems
from api.plumbing.middleware import (
    BODY_BUSY,
    BODY_REFUSED,
    EXCEEDED,
    PRINCIPAL,
    AuthenticateMiddleware,
    BodyLimitMiddleware,
    BodySlots,
    RequestIdMiddleware,
)
from api.plumbing.problems import ProblemError
from inferfleet.errors import FieldError

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
        return JSONResponse(
            {
                "length": len(body),
                "request_id": request.state.request_id,
                "exceeded": getattr(request.state, EXCEEDED, None),
            }
        )

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


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_a_declared_body_over_the_limit_reaches_the_app_empty_and_marked(
    client: TestClient, method: str
) -> None:
    response = client.request(method, "/jobs", content=b"x" * (LIMIT + 1))

    assert response.status_code == 200
    assert response.json()["length"] == 0
    assert response.json()["exceeded"] == LIMIT


def test_a_streamed_body_over_the_limit_reaches_the_app_empty_and_marked(
    client: TestClient,
) -> None:
    response = client.post("/jobs", content=chunks(LIMIT * 3))

    assert response.json()["length"] == 0
    assert response.json()["exceeded"] == LIMIT


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
    assert response.json()["exceeded"] is None


def test_the_limit_is_chosen_by_path(client: TestClient) -> None:
    assert client.post("/bulk", content=b"x" * BULK_LIMIT).json()["length"] == BULK_LIMIT
    assert client.post("/bulk", content=chunks(BULK_LIMIT + 1)).json()["exceeded"] == BULK_LIMIT


def test_a_get_is_never_limited(client: TestClient) -> None:
    response = client.request("GET", "/jobs", content=b"x" * (LIMIT * 5))

    assert response.status_code == 200
    assert response.json()["length"] == LIMIT * 5
    assert response.json()["exceeded"] is None


class Wire:
    """The server side of one request: its body in 10-byte chunks, counting those read."""

    def __init__(self, total: int, declared: bool) -> None:
        self.pending = list(chunks(total))
        self.read = 0
        self.declared = declared

    def scope(self) -> Scope:
        headers = [(b"content-length", str(10 * len(self.pending)).encode())]
        return {
            "type": "http",
            "method": "POST",
            "path": "/jobs",
            "headers": headers if self.declared else [],
        }

    async def receive(self) -> Message:
        if not self.pending:
            return {"type": "http.disconnect"}
        self.read += 1
        chunk = self.pending.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(self.pending)}


@pytest.mark.parametrize(
    ("declared", "read_before_app"),
    [
        pytest.param(True, 0, id="declared"),
        pytest.param(False, LIMIT // 10 + 1, id="streamed"),
    ],
)
def test_reading_stops_once_the_body_passes_the_limit(declared: bool, read_before_app: int) -> None:
    wire = Wire(LIMIT * 100, declared)
    seen: dict[str, object] = {}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen["read_before_app"] = wire.read
        seen["state"] = dict(scope["state"])

    async def send(message: Message) -> None:
        raise AssertionError("the middleware itself never answers")

    asyncio.run(BodyLimitMiddleware(app, limit_for=limit_for)(wire.scope(), wire.receive, send))

    assert seen == {"read_before_app": read_before_app, "state": {EXCEEDED: LIMIT}}


def test_the_rest_of_a_refused_body_is_discarded_if_the_app_reads_on() -> None:
    wire = Wire(LIMIT * 3, declared=False)
    messages: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        messages.append(await receive())
        messages.append(await receive())

    async def send(message: Message) -> None:
        raise AssertionError("the middleware itself never answers")

    asyncio.run(BodyLimitMiddleware(app, limit_for=limit_for)(wire.scope(), wire.receive, send))

    assert messages == [
        {"type": "http.request", "body": b"", "more_body": False},
        {"type": "http.disconnect"},
    ]
    assert wire.pending == []


# Body limit behind a FastAPI route: the dependencies answer, in API.md's order.


class Submit(BaseModel):
    x: str


def authenticated(authorization: Annotated[str | None, Header()] = None) -> str:
    if authorization != "Bearer good":
        raise ProblemError(401, "Unauthorized", "send an API key")
    return "caller"


def within_size(request: Request, caller: Annotated[str, Depends(authenticated)]) -> str:
    exceeded = getattr(request.state, EXCEEDED, None)
    if exceeded is not None:
        raise ProblemError(
            413, "Content Too Large", f"the request body is larger than {exceeded} bytes"
        )
    return caller


@pytest.fixture
def fastapi_client() -> TestClient:
    app = FastAPI(dependencies=[Depends(within_size)])

    @app.post("/jobs")
    def submit(body: Submit) -> dict[str, int]:
        return {"length": len(body.x)}

    problems.install(app, retry_after_s=5)
    app.add_middleware(BodyLimitMiddleware, limit_for=limit_for)
    app.add_middleware(RequestIdMiddleware)
    return TestClient(app)


GOOD = {"Authorization": "Bearer good", "Content-Type": "application/json"}
LARGE = json.dumps({"x": "a" * LIMIT * 3}).encode()


@pytest.mark.parametrize("streamed", [False, True], ids=["declared", "streamed"])
def test_an_unauthenticated_oversized_body_answers_401_not_413(
    fastapi_client: TestClient, streamed: bool
) -> None:
    content = iter([LARGE[:50], LARGE[50:]]) if streamed else LARGE

    response = fastapi_client.post(
        "/jobs", content=content, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 401


@pytest.mark.parametrize("streamed", [False, True], ids=["declared", "streamed"])
def test_an_authenticated_oversized_body_answers_413(
    fastapi_client: TestClient, streamed: bool
) -> None:
    content = iter([LARGE[:50], LARGE[50:]]) if streamed else LARGE

    response = fastapi_client.post(
        "/jobs", content=content, headers={**GOOD, "X-Request-ID": "client-42"}
    )

    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-request-id"] == "client-42"
    assert response.json() == {
        "type": "https://inferfleet.dev/problems/content-too-large",
        "title": "Content Too Large",
        "status": 413,
        "detail": f"the request body is larger than {LIMIT} bytes",
        "request_id": "client-42",
        "errors": [],
    }


def test_an_invalid_body_within_the_limit_answers_401_unauthenticated_and_422_after(
    fastapi_client: TestClient,
) -> None:
    body = json.dumps({"y": 1})
    anonymous = fastapi_client.post(
        "/jobs", content=body, headers={"Content-Type": "application/json"}
    )
    authenticated = fastapi_client.post("/jobs", content=body, headers=GOOD)

    assert anonymous.status_code == 401
    assert authenticated.status_code == 422
    assert fastapi_client.post("/jobs", json={"x": "abc"}, headers=GOOD).json() == {"length": 3}


# Authentication before the body


def test_a_refused_caller_is_answered_before_any_byte_of_its_body_is_read() -> None:
    wire = Wire(LIMIT * 100, declared=True)
    wire_scope = {**wire.scope(), "path": "/v1/jobs", "state": {"request_id": "r-1"}}
    sent: list[Message] = []

    async def authenticate(request: Request) -> object:
        raise ProblemError(401, "Unauthorized", "the API key is unknown or revoked")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("the app is never reached")

    async def send(message: Message) -> None:
        sent.append(message)

    middleware = AuthenticateMiddleware(BodyLimitMiddleware(app, limit_for=limit_for), authenticate)
    asyncio.run(middleware(wire_scope, wire.receive, send))

    assert wire.read == 0
    assert sent[0]["status"] == 401
    assert json.loads(sent[1]["body"])["request_id"] == "r-1"


def test_an_accepted_caller_is_left_for_the_routes() -> None:
    wire = Wire(LIMIT // 2, declared=True)
    seen: dict[str, object] = {}

    async def authenticate(request: Request) -> object:
        return ("caller", request.headers.get("authorization"))

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.update(scope["state"])

    async def send(message: Message) -> None:
        raise AssertionError("the middleware itself never answers")

    scope = {**wire.scope(), "path": "/v1/jobs"}
    scope["headers"] = [*scope["headers"], (b"authorization", b"Bearer k")]
    asyncio.run(AuthenticateMiddleware(app, authenticate)(scope, wire.receive, send))

    assert seen == {PRINCIPAL: ("caller", "Bearer k")}


def test_routes_outside_v1_are_not_authenticated(client: TestClient) -> None:
    async def authenticate(request: Request) -> object:
        raise AssertionError("never asked")

    app = AuthenticateMiddleware(client.app, authenticate)

    assert TestClient(app).get("/jobs").status_code == 200


# Large-body slots and the shape check


def test_a_large_body_waits_for_a_slot_and_is_not_read_when_none_frees() -> None:
    slots = BodySlots(count=1, large_bytes=LIMIT // 2, wait_s=0.05)
    release = asyncio.Event()
    seen: list[dict[str, object]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        seen.append({"state": dict(scope.get("state", {})), "length": len(message["body"])})
        if not seen[1:]:
            await release.wait()  # the first request holds its slot until released

    async def send(message: Message) -> None:
        raise AssertionError("the middleware itself never answers")

    middleware = BodyLimitMiddleware(app, limit_for=limit_for, slots=slots)
    holder, refused, small, later = (Wire(LIMIT, declared=True) for _ in range(4))
    small.pending = small.pending[:1]

    async def scenario() -> None:
        first = asyncio.create_task(middleware(holder.scope(), holder.receive, send))
        await asyncio.sleep(0)
        await middleware(refused.scope(), refused.receive, send)
        small_scope = {**small.scope(), "headers": [(b"content-length", b"10")]}
        await middleware(small_scope, small.receive, send)
        release.set()
        await first
        await middleware(later.scope(), later.receive, send)

    asyncio.run(scenario())

    assert seen == [
        {"state": {}, "length": LIMIT},
        {"state": {BODY_BUSY: 0.05}, "length": 0},
        {"state": {}, "length": 10},  # small bodies need no slot
        {"state": {}, "length": LIMIT},
    ]
    assert refused.read == 0


def test_a_body_the_inspection_refuses_reaches_the_app_empty_with_its_errors() -> None:
    error = FieldError(("items",), "too many", "too_long", 3)
    inspected: list[tuple[str, bytes]] = []

    def inspect(path: str, body: bytes) -> list[FieldError] | None:
        inspected.append((path, body))
        return [error] if body.startswith(b"bad") else None

    seen: list[object] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append((scope.get("state", {}).get(BODY_REFUSED), (await receive())["body"]))

    async def send(message: Message) -> None:
        raise AssertionError("the middleware itself never answers")

    middleware = BodyLimitMiddleware(app, limit_for=limit_for, inspect=inspect)
    for body in (b"bad body", b"good body"):
        scope: Scope = {"type": "http", "method": "POST", "path": "/bulk", "headers": []}

        async def receive(body: bytes = body) -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        asyncio.run(middleware(scope, receive, send))

    assert inspected == [("/bulk", b"bad body"), ("/bulk", b"good body")]
    assert seen == [([error], b""), (None, b"good body")]
