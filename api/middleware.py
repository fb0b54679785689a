"""ASGI middleware: a request id on every request, and body size limits per route."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# The `request.state` attribute that holds the limit a refused body exceeded.
EXCEEDED = "body_limit_exceeded"


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


class BodyLimitMiddleware:
    """Stops reading a body once it passes its path's limit; such a body never reaches the app.

    A body within the limit is read here and replayed to the app whole (the routes that
    take bodies parse them whole anyway). For a longer one, whether its Content-Length
    says so or the bytes show it, reading stops, `request.state.body_limit_exceeded` is
    set to the limit, and the app is handed an empty body. The middleware does not answer:
    the routes' first dependency (`api.deps`) answers 413 once the key is checked, so the
    checks run in API.md's order (401/403 before 413). The rest of the body is discarded:
    by the server once the response is sent, or here if the app asks for more.
    """

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._too_large(scope, receive, send, limit)
            return
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before sending its whole body
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > limit:
                chunks.clear()
                await self._too_large(scope, receive, send, limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        scope.setdefault("state", {})[EXCEEDED] = limit
        await self.app(scope, _replay(b"", _discarding(receive)), send)


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
