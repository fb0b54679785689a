"""Live progress as Server-Sent Events: `GET /v1/jobs/{id}/events` and
`GET /v1/batches/{id}/events` (API.md).

A job's stream sends the job as `GET` shows it at once, then again on every change of
its status, each as `event: job.<status>`, and ends after a terminal one. It wakes when
Postgres announces that jobs ended (`api.plumbing.waiters`, as long-polls do) and
otherwise looks again every `INFERFLEET_EVENTS_TICK_S` (a job taken by a worker or put
back on its topic is not announced); its reads are coalesced with every other read of
the process (`api.plumbing.reader`).

A job's event ids are its `progress`: an integer that grows with every status change a
job can make (queued 0, running 1, queued again after a failed attempt 2, running 3, …,
a terminal status one past the last of these), so a client that reconnects with
`Last-Event-ID` gets the job again only once it has moved past that event; a terminal job
always answers its terminal event, and the stream ends.

A batch's stream sends `event: batch.progress` (the batch as `GET` shows it, plus
`estimated_completion_at` from its measured drain rate, `DrainRate`) at once and then
whenever the batch changes, looking every tick, and ends with `batch.completed`,
`batch.failed` or `batch.cancelled`. Its ids count the stream's events, on from a
`Last-Event-ID` sent. Both streams send a `: keep-alive` comment after
`INFERFLEET_EVENTS_KEEPALIVE_S` without an event.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from fastapi.responses import StreamingResponse

from api.plumbing.deps import Principal, Services
from api.plumbing.problems import ProblemError
from inferfleet.batches.schemas import BatchView
from inferfleet.batches.view import load_view
from inferfleet.jobs.view import job_view
from inferfleet.tables import TERMINAL_STATUSES

MEDIA_TYPE = "text/event-stream"
KEEP_ALIVE = b": keep-alive\n\n"
BATCH_ENDED = ("completed", "failed", "cancelled")
# Seconds of history the drain rate is measured over.
RATE_WINDOW_S = 60.0


# What the routes' OpenAPI says of their answer.
DOCUMENTED: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "a stream of Server-Sent Events (`event:`, `id:`, `data:` the object "
        "as `GET` shows it), closed after the terminal event",
        "content": {MEDIA_TYPE: {"schema": {"type": "string"}}},
    }
}


def response(frames: AsyncIterator[bytes]) -> StreamingResponse:
    """The stream as an answer no proxy holds back."""
    return StreamingResponse(
        frames,
        media_type=MEDIA_TYPE,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def frame(event: str, event_id: int, data: dict[str, Any]) -> bytes:
    """One event as the wire carries it."""
    body = json.dumps(data, separators=(",", ":"))
    return f"event: {event}\nid: {event_id}\ndata: {body}\n\n".encode()


def last_event_id(header: str | None) -> int | None:
    """The `Last-Event-ID` a reconnecting client sent, or None (absent, or not ours)."""
    if header is None or not header.strip().isdigit():
        return None
    return int(header.strip())


def progress(status: str, attempts: int) -> int:
    """How far a job has come: grows with every status change a job can make."""
    if status in TERMINAL_STATUSES:
        return 2 * attempts + 1
    if status == "running":
        return 2 * attempts - 1
    return 2 * attempts  # queued: before its first attempt, or again after one


class Watch(Protocol):
    """What a stream watches: `look` makes the next frame (None: nothing new) and says
    whether the stream ends after it; `pause` waits until it is worth looking again."""

    async def look(self) -> tuple[bytes | None, bool]: ...

    async def pause(self, tick_s: float) -> None: ...


async def stream(watch: Watch, tick_s: float, keepalive_s: float) -> AsyncIterator[bytes]:
    """The frames of `watch`, looked at once and then after every pause, with a
    keep-alive comment after `keepalive_s` without one, until it ends."""
    quiet_since = time.monotonic()
    while True:
        made, last = await watch.look()
        if made is not None:
            quiet_since = time.monotonic()
            yield made
        elif time.monotonic() - quiet_since >= keepalive_s:
            quiet_since = time.monotonic()
            yield KEEP_ALIVE
        if last:
            return
        await watch.pause(tick_s)


async def job_events(
    services: Services, principal: Principal, job_id: str, resume_after: int | None
) -> AsyncIterator[bytes]:
    """The job's stream; 404 (raised before the first frame) for a job the caller cannot
    see."""
    first = await services.jobs.read(principal.reads, job_id)
    if first is None:
        raise ProblemError(404, "Not Found", f"no job {job_id!r}")
    return _job_stream(services, principal, job_id, first, resume_after)


async def _job_stream(
    services: Services, principal: Principal, job_id: str, first: Any, resume_after: int | None
) -> AsyncIterator[bytes]:
    settings = services.settings
    with services.waiters.watch(job_id) as ended:
        watch = JobWatch(services, principal, job_id, ended, first, resume_after)
        async for made in stream(watch, settings.events_tick_s, settings.events_keepalive_s):
            yield made


class JobWatch:
    """One job, for its stream: a frame whenever its `progress` passes the last sent."""

    def __init__(
        self,
        services: Services,
        principal: Principal,
        job_id: str,
        ended: asyncio.Future[Any],
        first: Any,
        resume_after: int | None,
    ) -> None:
        self._services = services
        self._principal = principal
        self._job_id = job_id
        self._ended = ended
        self._next: Any | None = first
        self._sent = -1 if resume_after is None else resume_after

    async def look(self) -> tuple[bytes | None, bool]:
        row, self._next = self._next, None
        if row is None:
            row = await self._services.jobs.read(self._principal.reads, self._job_id)
        if row is None:  # gone (its retention ran out) while watched
            return None, True
        terminal = row.status in TERMINAL_STATUSES
        step = progress(row.status, row.attempts)
        if step <= self._sent and not terminal:
            return None, False
        self._sent = step
        view = job_view(row, self._services.presigner()).model_dump(mode="json")
        return frame(f"job.{row.status}", step, view), terminal

    async def pause(self, tick_s: float) -> None:
        """Until the job is announced ended (its row comes with it) or a tick passes."""
        with suppress(TimeoutError):
            self._next = await asyncio.wait_for(asyncio.shield(self._ended), tick_s)


@dataclass
class DrainRate:
    """Jobs ended per second over the last `window_s`, from (time, ended) observations."""

    window_s: float = RATE_WINDOW_S

    def __post_init__(self) -> None:
        self._seen: deque[tuple[float, int]] = deque()

    def observe(self, at: float, ended: int) -> None:
        self._seen.append((at, ended))
        while len(self._seen) > 2 and at - self._seen[1][0] >= self.window_s:
            self._seen.popleft()

    def per_second(self) -> float | None:
        """None until two observations apart in time show jobs ending."""
        if len(self._seen) < 2:
            return None
        (t0, n0), (t1, n1) = self._seen[0], self._seen[-1]
        if t1 <= t0 or n1 <= n0:
            return None
        return (n1 - n0) / (t1 - t0)

    def completion(self, now: datetime, left: int) -> datetime | None:
        """When the `left` jobs will have ended at this rate (now, if none are left)."""
        if left <= 0:
            return now
        rate = self.per_second()
        return None if rate is None else now + timedelta(seconds=left / rate)


def ended_jobs(view: BatchView) -> int:
    counts = view.counts
    return counts.succeeded + counts.failed + counts.cancelled + counts.expired


async def batch_events(
    services: Services, principal: Principal, batch_id: str, resume_after: int | None
) -> AsyncIterator[bytes]:
    """The batch's stream; 404 (raised before the first frame) for a batch the caller
    cannot see."""
    first = await _batch(services, principal, batch_id)
    if first is None:
        raise ProblemError(404, "Not Found", f"no batch {batch_id!r}")
    settings = services.settings
    watch = BatchWatch(services, principal, first, resume_after)
    return stream(watch, settings.events_tick_s, settings.events_keepalive_s)


class BatchWatch:
    """One batch, for its stream: a frame whenever the batch as `GET` shows it changed."""

    def __init__(
        self, services: Services, principal: Principal, first: BatchView, resume_after: int | None
    ) -> None:
        self._services = services
        self._principal = principal
        self._id = first.id
        self._next: BatchView | None = first
        self._event_id = resume_after or 0
        self._last: dict[str, Any] | None = None
        self._rate = DrainRate()
        # The batch's life so far counts: the first event has an estimate already.
        self._rate.observe(time.monotonic() - _age_s(first), 0)

    async def look(self) -> tuple[bytes | None, bool]:
        view, self._next = self._next, None
        if view is None:
            view = await _batch(self._services, self._principal, self._id)
        if view is None:  # gone (its retention ran out) while watched
            return None, True
        ended = view.status in BATCH_ENDED
        self._rate.observe(time.monotonic(), ended_jobs(view))
        data = view.model_dump(mode="json")
        if data == self._last and not ended:
            return None, False
        self._last = data
        self._event_id += 1
        event = f"batch.{view.status}" if ended else "batch.progress"
        eta = {"estimated_completion_at": _iso(self._estimate(view, ended))}
        return frame(event, self._event_id, {**data, **eta}), ended

    async def pause(self, tick_s: float) -> None:
        await asyncio.sleep(tick_s)

    def _estimate(self, view: BatchView, ended: bool) -> datetime | None:
        if ended:
            return view.completed_at
        if view.status != "running":
            return None
        left = view.counts.total - ended_jobs(view)
        return self._rate.completion(datetime.now(UTC), left)


async def _batch(services: Services, principal: Principal, batch_id: str) -> BatchView | None:
    async with services.db.connect() as conn:
        view: BatchView | None = await conn.run_sync(
            load_view, principal.reads, batch_id, services.presigner()
        )
    return view


def _age_s(view: BatchView) -> float:
    return max((datetime.now(UTC) - view.created_at).total_seconds(), 0.0)


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(UTC).isoformat().replace("+00:00", "Z")
