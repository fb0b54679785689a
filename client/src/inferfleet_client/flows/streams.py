"""Flows over streams and pages: event streams (resumed after a cut), a results file's
lines, and every item of a paged list."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from inferfleet_client.errors import ConnectionFailedError, WaitTimeoutError
from inferfleet_client.flows.steps import (
    CloseStream,
    Emit,
    Flow,
    Params,
    ReadLine,
    Request,
    Sleep,
    checked,
    send,
)
from inferfleet_client.models import BatchPage, Event, JobPage
from inferfleet_client.retries import RetryPolicy, retry_delay
from inferfleet_client.sse import SSEDecoder

# The server sends a keep-alive comment at least every 15 s: a stream silent for this
# long is dead, and is opened again.
READ_TIMEOUT_S = 45.0


def events(
    path: str,
    policy: RetryPolicy,
    last_event_id: str | None,
    ends: Callable[[Event], bool],
    deadline: float | None = None,
) -> Flow[None]:
    """Emit every event of the stream at `path` until one that `ends` it; WaitTimeoutError
    (with the last event) once `deadline` (time.monotonic()) passes first, noticed at the
    next line (the server's keep-alives come at least every 15 s).

    A stream cut before that (the connection dropped, or the server closed it early) is
    opened again with `Last-Event-ID`, so no event is missed or repeated; `policy`
    bounds how many times.
    """
    decoder = SSEDecoder(last_id=last_event_id)
    last: Event | None = None
    reopened = 0
    waited = 0.0
    while True:
        headers = {"Accept": "text/event-stream"}
        if decoder.last_id is not None:
            headers["Last-Event-ID"] = decoder.last_id
        request = Request(
            "GET", path, headers=headers, stream=True, timeout=READ_TIMEOUT_S,
            resend_unanswered=True,
        )  # fmt: skip
        response = checked((yield from send(request, policy)))
        try:
            while (line := (yield ReadLine(response))) is not None:
                event = decoder.feed(line)
                if event is not None:
                    reopened, waited = 0, 0.0  # the stream made progress: a fresh budget
                    last = event
                    yield Emit(event)
                    if ends(event):
                        yield CloseStream(response)
                        return
                if deadline is not None and time.monotonic() >= deadline:
                    yield CloseStream(response)
                    raise WaitTimeoutError(f"{path} has not ended", last)
        except httpx.TransportError:
            pass  # opened again below, after the last event seen
        delay = retry_delay(policy, reopened, waited, None)
        if delay is None:
            raise ConnectionFailedError(
                f"the event stream {path} ended {reopened + 1} times in a row without an event"
            )
        yield Sleep(delay)
        waited += delay
        reopened += 1


def lines(url: str, policy: RetryPolicy, external: bool) -> Flow[None]:
    """Emit every non-empty line of the file at `url` (decoded as text), streamed."""
    request = Request("GET", url, stream=True, external=external, resend_unanswered=True)
    response = checked((yield from send(request, policy)))
    while (line := (yield ReadLine(response))) is not None:
        if line:
            yield Emit(line)


def pages(
    path: str, params: Params, policy: RetryPolicy, page: type[JobPage] | type[BatchPage]
) -> Flow[None]:
    """Emit every item of a paged list (`{"items", "next_cursor"}`), page after page."""
    cursor: str | None = None
    while True:
        query: dict[str, Any] = {**params, **({"cursor": cursor} if cursor else {})}
        request = Request("GET", path, params=query, resend_unanswered=True)
        response = checked((yield from send(request, policy)))
        found = page.model_validate_json(response.content)
        for item in found.items:
            yield Emit(item)
        cursor = found.next_cursor
        if not cursor:
            return
