"""Many long-polls held open at once, by one asyncio client on raw connections.

wrk cannot hold a waiting request meaningfully (it would count each as a 30 s latency
and open the next), so bench/api.py holds its long-polls here: one connection per job,
each sending `GET /v1/jobs/{id}?wait=S` once and reading nothing until the answer comes.
The client runs in a thread with its own event loop, and costs next to nothing while it
waits.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future


class LongPolls:
    """`GET /v1/jobs/{id}?wait=<wait_s>` for every ID, each on its own connection.

    `start()` returns once every request has been written; `answered` counts the answers
    received so far (none should come before `wait_s` for jobs that stay queued) and
    `dropped` the connections closed without one; `close()` drops every connection.
    """

    def __init__(self, host: str, port: int, key: str, ids: Sequence[str], wait_s: float) -> None:
        self._host, self._port, self._key = host, port, key
        self._ids = list(ids)
        self._wait_s = wait_s
        self.answered = 0
        self.dropped = 0  # closed by the server without an answer
        self.opened = 0
        self.open_seconds = 0.0
        self.held_seconds = 0.0  # from the last request written until the API held them all
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._writers: list[asyncio.StreamWriter] = []
        self._readers: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._thread.start()
        started = time.perf_counter()
        opening: Future[None] = asyncio.run_coroutine_threadsafe(self._open_all(), self._loop)
        opening.result(timeout=120)
        self.open_seconds = time.perf_counter() - started

    async def _open_all(self) -> None:
        # A few hundred connects at a time: the listen backlog is finite.
        for start in range(0, len(self._ids), 200):
            await asyncio.gather(*(self._open(i) for i in self._ids[start : start + 200]))

    async def _open(self, job_id: str) -> None:
        reader, writer = await asyncio.open_connection(self._host, self._port)
        request = (
            f"GET /v1/jobs/{job_id}?wait={self._wait_s:g} HTTP/1.1\r\n"
            f"Host: {self._host}:{self._port}\r\n"
            f"Authorization: Bearer {self._key}\r\n\r\n"
        )
        writer.write(request.encode())
        await writer.drain()
        self._writers.append(writer)
        self.opened += 1
        self._readers.append(asyncio.create_task(self._await_answer(reader)))

    async def _await_answer(self, reader: asyncio.StreamReader) -> None:
        if await reader.readline():  # the status line: the poll was answered
            self.answered += 1
        else:
            self.dropped += 1

    def close(self) -> None:
        async def close_all() -> None:
            for task in self._readers:
                task.cancel()
            for writer in self._writers:
                writer.close()
            await asyncio.gather(*self._readers, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close_all(), self._loop).result(timeout=60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
