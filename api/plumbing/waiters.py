"""Long-polls: requests waiting for jobs to end, woken by Postgres notifications.

Each waiting request holds an asyncio future keyed by its job id; nothing polls
Postgres per waiter. When Postgres announces that a transaction ended jobs
(`inferfleet.clients.notify.JOBS_ENDED`, at most one notification per transaction),
`JobWaiters.run` asks in ONE query which of the ids waited on are terminal now, and
hands each of their futures the job's row. Announcements that arrive while that query
runs are folded into one more query after it, so a process runs at most one such query
at a time, however fast jobs end and however many requests wait.

A request registers its future before it first reads the job: a job that ends after
that read is announced after the registration, so no end falls between the two.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from api.plumbing.reader import BY_IDS
from inferfleet.tables import TERMINAL_STATUSES, jobs

log = logging.getLogger(__name__)

ENDED = BY_IDS.where(jobs.c.status.in_(TERMINAL_STATUSES))


class JobWaiters:
    """The futures of the requests waiting in this process, by job id.

    `ended()` (the notification's handler, and the listener's after a reconnect, when
    notifications may have been missed) asks for a check; `run()` (a lifespan task) runs
    them. A check that fails (Postgres unreachable) is tried again after `retry_s`.
    """

    def __init__(self, db: AsyncEngine, retry_s: float = 1.0) -> None:
        self._db = db
        self._retry_s = retry_s
        self._waiting: dict[str, set[asyncio.Future[Any]]] = {}
        self._due = asyncio.Event()
        self.checks = 0  # queries run, for tests and metrics

    def __len__(self) -> int:
        """How many requests wait."""
        return sum(len(futures) for futures in self._waiting.values())

    @contextmanager
    def watch(self, job_id: str) -> Iterator[asyncio.Future[Any]]:
        """A future resolved with the job's row once a check finds it terminal."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(job_id, set()).add(future)
        try:
            yield future
        finally:
            futures = self._waiting.get(job_id)
            if futures is not None:
                futures.discard(future)
                if not futures:
                    del self._waiting[job_id]

    def ended(self) -> None:
        """Jobs ended somewhere: check the waited-on ones (soon, once, on the loop)."""
        self._due.set()

    async def run(self) -> None:
        """Check whenever asked, for ever (cancel the task to stop)."""
        while True:
            await self._due.wait()
            self._due.clear()
            ids = list(self._waiting)
            if not ids:
                continue
            try:
                async with self._db.connect() as conn:
                    rows = (await conn.execute(ENDED, {"ids": ids})).all()
            except SQLAlchemyError as e:
                log.warning(
                    "checking %d waited-on jobs failed (%s); trying again in %.0f s",
                    len(ids),
                    type(e).__name__,
                    self._retry_s,
                )
                await asyncio.sleep(self._retry_s)
                self._due.set()
                continue
            finally:
                self.checks += 1
            for row in rows:
                for future in self._waiting.get(row.id, ()):
                    if not future.done():
                        future.set_result(row)
