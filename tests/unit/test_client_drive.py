"""The two drivers run the same flows alike (inferfleet_client.drive), over httpx's
MockTransport: parallel waits in order with progress, a failure that stops the group,
an event stream cut mid-way and resumed after its last event."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from inferfleet_client import AsyncClient, Client, NotFoundError, RetryPolicy

FAST = RetryPolicy(max_retries=3, backoff_s=0.0, max_backoff_s=0.0)


def job(job_id: str, status: str = "succeeded") -> dict[str, Any]:
    return {"id": job_id, "status": status, "model": "m", "version": "1", "outputs": {},
            "output_uri": None, "output_url": None, "error": None, "attempts": 1,
            "metadata": {}, "batch_id": None, "created_at": "2026-12-04T12:00:00Z",
            "started_at": None, "completed_at": None}  # fmt: skip


def jobs_api(
    missing: str | None = None, asked: list[list[str]] | None = None
) -> Callable[[httpx.Request], httpx.Response]:
    """`GET /v1/jobs/{id}` and `GET /v1/jobs?id=…` of ended jobs, but `missing`; the
    lists of IDs asked for go to `asked`."""

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/jobs":
            ids = request.url.params.get_list("id")
            if asked is not None:
                asked.append(ids)
            found = [job(i) for i in ids if i != missing]
            return httpx.Response(200, json={"items": found, "next_cursor": None})
        job_id = request.url.path.rsplit("/", 1)[-1]
        if job_id == missing:
            problem = {"type": "t", "title": "Not Found", "status": 404, "detail": "no job",
                       "request_id": "r", "errors": []}  # fmt: skip
            return httpx.Response(404, json=problem)
        return httpx.Response(200, json=job(job_id))

    return answer


def run_both(
    handler: Callable[[httpx.Request], httpx.Response],
    sync: Callable[[Client], Any],
    async_: Callable[[AsyncClient], Any],
) -> tuple[Any, Any]:
    with Client("http://api", retries=FAST, http=httpx.Client(transport=httpx.MockTransport(
        handler))) as client:  # fmt: skip
        sync_result = sync(client)

    async def go() -> Any:
        transport = httpx.MockTransport(handler)
        async with AsyncClient("http://api", retries=FAST, http=httpx.AsyncClient(
            transport=transport)) as client:  # fmt: skip
            return await async_(client)

    return sync_result, asyncio.run(go())


def test_wait_many_answers_in_order_with_one_progress_per_job() -> None:
    ids = [f"job_{n}" for n in range(250)]
    seen: list[list[int]] = [[], []]
    asked: list[list[str]] = []

    sync, async_ = run_both(
        jobs_api(asked=asked),
        lambda c: c.jobs.wait_many(ids, concurrency=5, on_progress=lambda p: seen[0].append(
            p.done)),
        lambda c: c.jobs.wait_many(ids, concurrency=5, on_progress=lambda p: seen[1].append(
            p.done)),
    )  # fmt: skip

    assert [j.id for j in sync] == ids
    assert [j.id for j in async_] == ids
    assert seen == [list(range(1, 251))] * 2
    # 100 jobs to a request, newest first; each job asked for once by each driver.
    assert sorted(len(a) for a in asked) == [50, 50, 100, 100, 100, 100]
    assert sorted(i for a in asked for i in a) == sorted(ids * 2)
    assert ids[-1] in [a[0] for a in asked]


def test_a_failure_in_a_parallel_group_is_raised_by_both_drivers() -> None:
    ids = [f"job_{n}" for n in range(250)]  # three requests, one of them failing
    handler = jobs_api(missing="job_7")
    with (
        Client("http://api", retries=FAST, http=httpx.Client(transport=httpx.MockTransport(
            handler))) as client,
        pytest.raises(NotFoundError, match="no job"),
    ):  # fmt: skip
        client.jobs.wait_many(ids, concurrency=4)

    async def go() -> None:
        http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        async with AsyncClient("http://api", retries=FAST, http=http) as aclient:
            await aclient.jobs.wait_many(ids, concurrency=4)

    with pytest.raises(NotFoundError, match="no job"):
        asyncio.run(go())


class Stream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body that sends `chunks`, then drops the connection if `cut`."""

    def __init__(self, chunks: list[bytes], cut: bool) -> None:
        self.chunks = chunks
        self.cut = cut

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks
        if self.cut:
            raise httpx.ReadError("connection reset")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
        if self.cut:
            raise httpx.ReadError("connection reset")


def frame(n: int, status: str) -> bytes:
    data = httpx.Response(200, json=job("job_1", status)).text
    return f"event: job.{status}\nid: {n}\ndata: {data}\n\n".encode()


def test_an_event_stream_cut_mid_way_is_resumed_after_its_last_event() -> None:
    resumed_from: list[str | None] = []

    def events(request: httpx.Request) -> httpx.Response:
        last = request.headers.get("last-event-id")
        resumed_from.append(last)
        if last is None:  # the first connection dies after two events
            chunks = [b": keep-alive\n\n", frame(0, "queued"), frame(1, "running")]
            return httpx.Response(200, stream=Stream(chunks, cut=True))
        return httpx.Response(200, stream=Stream([frame(2, "succeeded")], cut=False))

    def names(found: list[Any]) -> list[tuple[str, str | None]]:
        return [(e.event, e.id) for e in found]

    async def collect(client: AsyncClient) -> list[Any]:
        return [e async for e in client.jobs.events("job_1")]

    sync, async_ = run_both(events, lambda c: list(c.jobs.events("job_1")), collect)

    expected = [("job.queued", "0"), ("job.running", "1"), ("job.succeeded", "2")]
    assert names(sync) == expected
    assert names(async_) == expected
    assert resumed_from == [None, "1", None, "1"]
