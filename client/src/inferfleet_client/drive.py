"""The two drivers of flows (`flows.steps`): one over httpx.Client, one over
httpx.AsyncClient. They do I/O only; every decision is the flow's.

Each driver's loop hands the flow's emits out as `Emitted` and ends with `Returned`, so
one loop serves both a run with a progress callback and an iterator.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from inferfleet_client.config import CHUNK_BYTES, ClientConfig, httpx_arguments
from inferfleet_client.errors import InferfleetError
from inferfleet_client.flows.steps import (
    CloseStream,
    Emit,
    FileBody,
    Flow,
    Parallel,
    ReadLine,
    Request,
    Sleep,
)

T = TypeVar("T")


@dataclass(frozen=True)
class Emitted:
    """A value the flow emitted."""

    value: Any


@dataclass(frozen=True)
class Returned:
    """The flow's result."""

    value: Any


class StoppedError(InferfleetError):
    """Raised inside a parallel flow when another of its group failed."""


def file_chunks(body: FileBody) -> Iterator[bytes]:
    """The file's bytes in chunks, reporting progress after each."""
    sent = 0
    with body.path.open("rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            sent += len(chunk)
            yield chunk
            if body.progress is not None:
                body.progress(sent, body.size)


async def _async_chunks(body: FileBody) -> AsyncIterator[bytes]:
    for chunk in file_chunks(body):
        yield chunk


class SyncDriver:
    """Runs flows over an httpx.Client; `Parallel` groups run on threads."""

    def __init__(self, http: httpx.Client, config: ClientConfig) -> None:
        self.http = http
        self.config = config

    def run(self, flow: Flow[T], on_emit: Callable[[Any], None] | None = None) -> T:
        """Run `flow` to its end; its emits go to `on_emit` (from worker threads too,
        under `Parallel`)."""
        for out in self.loop(flow):
            if isinstance(out, Returned):
                result: T = out.value
                return result
            if on_emit is not None:
                on_emit(out.value)
        raise AssertionError("a flow's loop ends with its result")

    def iterate(self, flow: Flow[Any]) -> Iterator[Any]:
        """The values `flow` emits, as they come."""
        for out in self.loop(flow):
            if isinstance(out, Emitted):
                yield out.value

    def loop(
        self, flow: Flow[Any], stop: threading.Event | None = None
    ) -> Generator[Emitted | Returned, None, None]:
        streams: dict[int, tuple[httpx.Response, Iterator[str]]] = {}
        sent: Any = None
        thrown: BaseException | None = None
        try:
            while True:
                if stop is not None and stop.is_set():
                    thrown = StoppedError("another flow of the group failed")
                try:
                    step = flow.throw(thrown) if thrown is not None else flow.send(sent)
                except StopIteration as done:
                    yield Returned(done.value)
                    return
                sent, thrown = None, None
                try:
                    if isinstance(step, Request):
                        sent = self._send(step, streams)
                    elif isinstance(step, ReadLine):
                        sent = next(streams[id(step.response)][1], None)
                    elif isinstance(step, CloseStream):
                        streams.pop(id(step.response))[0].close()
                    elif isinstance(step, Sleep):
                        time.sleep(step.seconds)
                    elif isinstance(step, Emit):
                        yield Emitted(step.value)
                    else:
                        sent = yield from self._parallel(step)
                except httpx.TransportError as e:
                    thrown = e
        finally:
            flow.close()
            for response, _ in streams.values():
                response.close()

    def _send(
        self, step: Request, streams: dict[int, tuple[httpx.Response, Iterator[str]]]
    ) -> httpx.Response:
        content = None if step.body is None else file_chunks(step.body)
        request = self.http.build_request(**httpx_arguments(step, self.config), content=content)
        response = self.http.send(request, stream=step.stream)
        if step.stream and response.status_code < 400:
            streams[id(response)] = (response, response.iter_lines())
        elif step.stream:
            response.read()
            response.close()
        return response

    def _parallel(self, step: Parallel) -> Generator[Emitted | Returned, None, list[Any]]:
        out: queue.SimpleQueue[Emitted | Future[Any]] = queue.SimpleQueue()
        stop = threading.Event()

        def run_one(flow: Flow[Any]) -> Any:
            for item in self.loop(flow, stop):
                if isinstance(item, Returned):
                    return item.value
                out.put(item)
            raise AssertionError("a flow's loop ends with its result")

        pool = ThreadPoolExecutor(max_workers=step.limit, thread_name_prefix="inferfleet")
        futures = [pool.submit(run_one, flow) for flow in step.flows]
        for future in futures:
            future.add_done_callback(out.put)
        try:
            ended = 0
            while ended < len(futures):
                item = out.get()
                if isinstance(item, Emitted):
                    yield item
                    continue
                ended += 1
                if item.exception() is not None:
                    item.result()  # raises it
            return [f.result() for f in futures]
        finally:
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)


class AsyncDriver:
    """Runs flows over an httpx.AsyncClient; `Parallel` groups run as tasks."""

    def __init__(self, http: httpx.AsyncClient, config: ClientConfig) -> None:
        self.http = http
        self.config = config

    async def run(self, flow: Flow[T], on_emit: Callable[[Any], None] | None = None) -> T:
        """Run `flow` to its end; its emits go to `on_emit`."""
        async for out in self.loop(flow):
            if isinstance(out, Returned):
                result: T = out.value
                return result
            if on_emit is not None:
                on_emit(out.value)
        raise AssertionError("a flow's loop ends with its result")

    async def iterate(self, flow: Flow[Any]) -> AsyncIterator[Any]:
        """The values `flow` emits, as they come."""
        async for out in self.loop(flow):
            if isinstance(out, Emitted):
                yield out.value

    async def loop(self, flow: Flow[Any]) -> AsyncIterator[Emitted | Returned]:
        streams: dict[int, tuple[httpx.Response, AsyncIterator[str]]] = {}
        sent: Any = None
        thrown: BaseException | None = None
        try:
            while True:
                try:
                    step = flow.throw(thrown) if thrown is not None else flow.send(sent)
                except StopIteration as done:
                    yield Returned(done.value)
                    return
                sent, thrown = None, None
                try:
                    if isinstance(step, Request):
                        sent = await self._send(step, streams)
                    elif isinstance(step, ReadLine):
                        sent = await anext(streams[id(step.response)][1], None)
                    elif isinstance(step, CloseStream):
                        await streams.pop(id(step.response))[0].aclose()
                    elif isinstance(step, Sleep):
                        await asyncio.sleep(step.seconds)
                    elif isinstance(step, Emit):
                        yield Emitted(step.value)
                    else:
                        results: list[Any] = []
                        async for item in self._parallel(step, results):
                            yield item
                        sent = results
                except httpx.TransportError as e:
                    thrown = e
        finally:
            flow.close()
            for response, _ in streams.values():
                await response.aclose()

    async def _send(
        self, step: Request, streams: dict[int, tuple[httpx.Response, AsyncIterator[str]]]
    ) -> httpx.Response:
        content = None if step.body is None else _async_chunks(step.body)
        request = self.http.build_request(**httpx_arguments(step, self.config), content=content)
        response = await self.http.send(request, stream=step.stream)
        if step.stream and response.status_code < 400:
            streams[id(response)] = (response, response.aiter_lines())
        elif step.stream:
            await response.aread()
            await response.aclose()
        return response

    async def _parallel(self, step: Parallel, results: list[Any]) -> AsyncIterator[Emitted]:
        out: asyncio.Queue[Emitted | asyncio.Task[Any]] = asyncio.Queue()
        slots = asyncio.Semaphore(step.limit)

        async def run_one(flow: Flow[Any]) -> Any:
            async with slots:
                async for item in self.loop(flow):
                    if isinstance(item, Returned):
                        return item.value
                    out.put_nowait(item)
            raise AssertionError("a flow's loop ends with its result")

        tasks = [asyncio.create_task(run_one(flow)) for flow in step.flows]
        for task in tasks:
            task.add_done_callback(out.put_nowait)
        try:
            ended = 0
            while ended < len(tasks):
                item = await out.get()
                if isinstance(item, Emitted):
                    yield item
                    continue
                ended += 1
                if not item.cancelled() and item.exception() is not None:
                    item.result()  # raises it
            results.extend(task.result() for task in tasks)
        finally:
            for task in tasks:
                task.cancel()
