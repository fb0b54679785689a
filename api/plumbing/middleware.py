"""ASGI middleware: a request id on every request, the caller before its body, and what
reading and parsing a body may cost.

From the outside in: `RequestIdMiddleware`, `AuthenticateMiddleware` (401 from the
headers alone), `BodyLimitMiddleware` (size, large-body slots, shape). The last one never
answers itself: it marks `request.state` and the routes' first dependency (`api.plumbing.deps`)
answers, so the checks run in API.md's order.
"""

from __future__ import annotations

import asyncio
import io
import re
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.plumbing.problems import ProblemError, problem_response
from inferfleet.errors import FieldError

REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# `request.state` attributes: the limit a refused body exceeded; the field errors of a
# body refused for its shape before parsing; the seconds a large body waited for a slot
# in vain; the caller `AuthenticateMiddleware` resolved.
EXCEEDED = "body_limit_exceeded"
BODY_REFUSED = "body_refused"
BODY_BUSY = "body_slots_busy"
PRINCIPAL = "principal"

# Bodies up to this size are inspected on the event loop (about 20 µs for a single job,
# cheaper than a hop to a thread); larger ones in a thread, so the loop never waits on one.
INLINE_INSPECT_BYTES = 16 * 1024
# What a body's path and bytes are refused for before parsing: field errors, or None.
Inspect = Callable[[str, bytes], list[FieldError] | None]


class RequestIdMiddleware:
    """Takes the client's `X-Request-ID` (if well formed) or makes one, and echoes it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = sent if REQUEST_ID.fullmatch(sent) else f"req_{uuid.uuid4().hex}"
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"x-request-id", request_id.encode("latin-1")),
                ]
            await send(message)

        await self.app(scope, receive, send_with_id)


class AuthenticateMiddleware:
    """Resolves the caller of every `/v1` request from its headers before the body is read.

    `authenticate(request)` returns the caller, which is left on `request.state` for the
    routes, or raises ProblemError, which is answered at once: a request without a valid
    key costs its headers only, however large a body it announces or sends.
    """

    def __init__(self, app: ASGIApp, authenticate: Callable[[Request], Awaitable[object]]) -> None:
        self.app = app
        self.authenticate = authenticate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})
        request = Request(scope)
        try:
            scope["state"][PRINCIPAL] = await self.authenticate(request)
        except ProblemError as refused:
            await problem_response(request, refused)(scope, receive, send)
            return
        await self.app(scope, receive, send)


class BodySlots:
    """At most `count` large bodies read and handled at once in this process.

    A body needs a slot once it passes `large_bytes` (by its Content-Length, or by the
    bytes read so far); it waits up to `wait_s` for one.
    """

    def __init__(self, count: int, large_bytes: int, wait_s: float) -> None:
        self.large_bytes = large_bytes
        self.wait_s = wait_s
        self._free = asyncio.Semaphore(count)

    async def take(self) -> bool:
        """Whether a slot was taken within `wait_s`; give it back with `give_back`."""
        try:
            await asyncio.wait_for(self._free.acquire(), self.wait_s)
        except TimeoutError:
            return False
        return True

    def give_back(self) -> None:
        self._free.release()


class BodyLimitMiddleware:
    """Stops reading a body once it passes its path's limit; such a body never reaches the app.

    A body within the limit is read here and replayed to the app whole (the routes that
    take bodies parse them whole anyway). For a longer one, whether its Content-Length
    says so or the bytes show it, reading stops, `request.state.body_limit_exceeded` is
    set to the limit, and the app is handed an empty body. The middleware does not answer:
    the routes' first dependency (`api.plumbing.deps`) answers 413 once the key is checked, so the
    checks run in API.md's order (401/403 before 413). The rest of the body is discarded:
    by the server once the response is sent, or here if the app asks for more.

    With `slots`, a large body is read only while it holds a slot, until the app has
    answered; one that gets none in time is not read on (`body_slots_busy`, then 503).
    With `inspect`, a body within the limit is looked at (in a thread when large) before the app
    parses it; field errors it finds are left as `body_refused` (then 422) and the app
    is handed an empty body, so the body is never parsed.
    """

    def __init__(
        self,
        app: ASGIApp,
        limit_for: Callable[[str], int],
        slots: BodySlots | None = None,
        inspect: Inspect | None = None,
    ) -> None:
        self.app = app
        self.limit_for = limit_for
        self.slots = slots
        self.inspect = inspect

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await self._too_large(scope, receive, send, limit)
            return
        # A slot taken for the body is held until the app has answered.
        async with AsyncExitStack() as held:
            body = await self._read_body(scope, receive, send, limit, declared, held)
            if body is None or await self._refused_on_inspection(scope, receive, send, body):
                return
            await self.app(scope, _replay(body, receive), send)

    async def _read_body(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        limit: int,
        declared: int | None,
        held: AsyncExitStack,
    ) -> bytes | None:
        """The whole body, read while it holds a slot if it needs one; None when the
        client went away, or when it was refused (too large, or no slot) and the app was
        handed an empty body instead."""
        slotted: bool | None = False
        if declared is not None:
            slotted = await self._hold_slot(declared, held)
        received = 0
        # BytesIO grows in place and hands its buffer over without a copy at the end.
        with io.BytesIO() as chunks:
            while slotted is not None:
                message = await receive()
                if message["type"] != "http.request":
                    return None  # the client went away before sending its whole body
                chunk = message.get("body", b"")
                received += len(chunk)
                if received > limit:
                    break
                if not slotted:
                    slotted = await self._hold_slot(received, held)
                    if slotted is None:
                        break
                chunks.write(chunk)
                if not message.get("more_body", False):
                    return chunks.getvalue()
        if slotted is None:
            await self._refuse(scope, receive, send, BODY_BUSY)
        else:
            await self._too_large(scope, receive, send, limit)
        return None

    async def _hold_slot(self, size: int, held: AsyncExitStack) -> bool | None:
        """True once a slot is taken (and held by `held`) for a body of `size` bytes,
        False when it needs none, None when none was free in time."""
        if self.slots is None or size <= self.slots.large_bytes:
            return False
        if not await self.slots.take():
            return None
        held.callback(self.slots.give_back)
        return True

    async def _refused_on_inspection(
        self, scope: Scope, receive: Receive, send: Send, body: bytes
    ) -> bool:
        """Whether `inspect` found field errors in the body, which the app then gets
        as `body_refused` with an empty body."""
        if self.inspect is None or not body:
            return False
        if len(body) <= INLINE_INSPECT_BYTES:
            errors = self.inspect(scope["path"], body)
        else:
            errors = await run_in_threadpool(self.inspect, scope["path"], body)
        if not errors:
            return False
        await self._refuse(scope, receive, send, BODY_REFUSED, errors)
        return True

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, reason: str, value: object = None
    ) -> None:
        if value is None and self.slots is not None:
            value = self.slots.wait_s
        scope.setdefault("state", {})[reason] = value
        await self.app(scope, _replay(b"", _discarding(receive)), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        scope.setdefault("state", {})[EXCEEDED] = limit
        await self.app(scope, _replay(b"", _discarding(receive)), send)


def _declared_length(scope: Scope) -> int | None:
    """The request's Content-Length, when it is a number."""
    declared = dict(scope["headers"]).get(b"content-length")
    return int(declared) if declared is not None and declared.isdigit() else None


def _replay(body: bytes, receive: Receive) -> Receive:
    """`body` as the whole request body, then `receive` (for the disconnect)."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _discarding(receive: Receive) -> Receive:
    """`receive` with the rest of a refused body read and thrown away, chunk by chunk."""

    async def discard() -> Message:
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return message

    return discard
