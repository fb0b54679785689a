"""The steps a flow asks its driver to take, and the flows every request goes through.

A flow is a generator: it yields a step, the driver (`Client` with httpx.Client,
`AsyncClient` with httpx.AsyncClient) takes it and sends the outcome back. Request
building, retries, answer parsing, pagination, waiting and stream decoding are written
once, as flows; the two drivers only do I/O. What a driver sends back:

- `Request`: the `httpx.Response` (its body read, unless `stream` and the status < 400),
  or the `httpx.TransportError` thrown in;
- `ReadLine`: the stream's next line, or None at its end (or a TransportError thrown in);
- `CloseStream`, `Sleep`, `Emit`: None;
- `Parallel`: the results of its flows, in order.

`Emit` hands a value to the caller: an item of an iterator (`iterate`) or an argument of
a progress callback (`run`).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from inferfleet_client.errors import ConnectionFailedError, problem_error
from inferfleet_client.retries import (
    RETRIED_STATUSES,
    RetryPolicy,
    parse_retry_after,
    retry_delay,
)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

Params = Mapping[str, str | int | float | Sequence[str]]


@dataclass(frozen=True)
class FileBody:
    """A local file sent as a request body, read in chunks; `progress(sent, total)` is
    called after each chunk."""

    path: Path
    size: int
    progress: Callable[[int, int], None] | None = None


@dataclass(frozen=True)
class Request:
    """One HTTP request. `url` is a path under the base URL, or, when `external`, an
    absolute URL (a presigned S3 URL: sent without the API key).

    `resend_unanswered`: the request may be sent again after a connection failure,
    because repeating it cannot do anything twice (a read, or a keyed submit).
    """

    method: str
    url: str
    params: Params | None = None
    json: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: FileBody | None = None
    external: bool = False
    stream: bool = False
    timeout: float | None = None
    resend_unanswered: bool = False


@dataclass(frozen=True)
class ReadLine:
    """Read the next line of a streamed response."""

    response: httpx.Response


@dataclass(frozen=True)
class CloseStream:
    """Close a streamed response before its end."""

    response: httpx.Response


@dataclass(frozen=True)
class Sleep:
    """Wait this many seconds."""

    seconds: float


@dataclass(frozen=True)
class Emit:
    """Hand `value` to the caller."""

    value: Any


@dataclass(frozen=True)
class Parallel:
    """Run `flows` at most `limit` at a time; their emits go to the caller's callback."""

    flows: Sequence[Generator[Any, Any, Any]]
    limit: int


Step = Request | ReadLine | CloseStream | Sleep | Emit | Parallel
Flow = Generator[Step, Any, T]


def deadline_after(timeout_s: float | None) -> float | None:
    """The time.monotonic() at which a wait of `timeout_s` gives up (None: never)."""
    return None if timeout_s is None else time.monotonic() + timeout_s


def idempotency_key() -> str:
    """A new key for one logical submit: its retries send the same one."""
    return f"ifc-{uuid.uuid4()}"


def send(request: Request, policy: RetryPolicy) -> Flow[httpx.Response]:
    """Send `request`, again after `Retry-After` on 429 and 503 while `policy` allows;
    after a connection failure only when the request allows it. Returns the last answer,
    whatever its status; raises ConnectionFailedError when no answer came."""
    retry = 0
    waited = 0.0
    while True:
        try:
            response: httpx.Response = yield request
        except httpx.TransportError as e:
            delay = retry_delay(policy, retry, waited, None) if request.resend_unanswered else None
            if delay is None:
                raise ConnectionFailedError(
                    f"{request.method} {_shown(request)} got no answer after {retry + 1} "
                    f"attempt(s): {e!r}"
                ) from e
        else:
            if response.status_code not in RETRIED_STATUSES:
                return response
            after = parse_retry_after(response.headers.get("retry-after"))
            delay = retry_delay(policy, retry, waited, after)
            if delay is None:
                return response
        yield Sleep(delay)
        waited += delay
        retry += 1


def _shown(request: Request) -> str:
    # A presigned URL's query is a credential: never put it in a message.
    return request.url.split("?", 1)[0]


def checked(response: httpx.Response) -> httpx.Response:
    """`response` if it succeeded; else the typed error of its problem document."""
    if response.status_code < 400:
        return response
    try:
        body: Any = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = response.text
    after = parse_retry_after(response.headers.get("retry-after"))
    raise problem_error(response.status_code, body, response.headers.get("x-request-id"), after)


def call(request: Request, policy: RetryPolicy, model: type[M]) -> Flow[M]:
    """Send `request` (with retries) and parse its successful answer as `model`."""
    response = yield from send(request, policy)
    return model.model_validate_json(checked(response).content)


def body_of(model: BaseModel) -> Any:
    """A request model as the JSON it is sent as (unset optional fields left out)."""
    return model.model_dump(mode="json", exclude_none=True)


def relay(inner: Flow[Any], convert: Callable[[Any], T]) -> Flow[T | None]:
    """Run `inner` inside this flow, emitting `convert(value)` for each of its emits;
    returns the last converted value (None if it emitted nothing)."""
    last: T | None = None
    sent: Any = None
    thrown: BaseException | None = None
    while True:
        try:
            step = inner.throw(thrown) if thrown is not None else inner.send(sent)
        except StopIteration:
            return last
        sent, thrown = None, None
        if isinstance(step, Emit):
            last = convert(step.value)
            yield Emit(last)
            continue
        try:
            sent = yield step
        except GeneratorExit:
            inner.close()
            raise
        except BaseException as e:  # noqa: BLE001 - handed on to the inner flow
            thrown = e
