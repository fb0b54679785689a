"""api.plumbing.waiters.JobWaiters: one query per burst of notifications, for every waiter."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy.exc import OperationalError

from api.plumbing.waiters import JobWaiters


class FakeDb:
    """Answers the waiters' check from `ended` (the ids now terminal); records each
    check's ids. While `gate` is clear a check waits for it, as a slow query would."""

    def __init__(self) -> None:
        self.ended: set[str] = set()
        self.asked: list[list[str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.failures = 0

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[Any]:
        yield self

    async def execute(self, statement: Any, params: dict[str, Any]) -> Any:
        self.asked.append(sorted(params["ids"]))
        await self.gate.wait()
        if self.failures:
            self.failures -= 1
            raise OperationalError("SELECT", {}, Exception("connection refused"))
        rows = [SimpleNamespace(id=i, status="succeeded") for i in params["ids"] if i in self.ended]
        return SimpleNamespace(all=lambda: rows)


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def test_one_check_answers_every_waiter_of_an_ended_job_and_only_those() -> None:
    async def main() -> tuple[list[str], list[list[str]], int]:
        db = FakeDb()
        waiters = JobWaiters(cast(Any, db))
        task = asyncio.create_task(waiters.run())
        with waiters.watch("a") as a1, waiters.watch("a") as a2, waiters.watch("b") as b:
            db.ended = {"a"}
            waiters.ended()
            await settle()
            woken = [f.result().id for f in (a1, a2) if f.done()]
            assert not b.done()
        task.cancel()
        return woken, db.asked, len(waiters)

    woken, asked, left = asyncio.run(main())

    assert woken == ["a", "a"]
    assert asked == [["a", "b"]]
    assert left == 0


def test_notifications_during_a_check_fold_into_one_more_check() -> None:
    async def main() -> list[list[str]]:
        db = FakeDb()
        waiters = JobWaiters(cast(Any, db))
        task = asyncio.create_task(waiters.run())
        with waiters.watch("a"):
            db.gate.clear()
            waiters.ended()
            await settle()
            for _ in range(50):
                waiters.ended()
            db.gate.set()
            await settle()
        task.cancel()
        return db.asked

    assert asyncio.run(main()) == [["a"], ["a"]]


def test_nobody_waiting_means_no_query() -> None:
    async def main() -> list[list[str]]:
        db = FakeDb()
        waiters = JobWaiters(cast(Any, db))
        task = asyncio.create_task(waiters.run())
        waiters.ended()
        await settle()
        task.cancel()
        return db.asked

    assert asyncio.run(main()) == []


def test_a_failed_check_is_tried_again_and_then_wakes_its_waiter() -> None:
    async def main() -> str:
        db = FakeDb()
        db.failures = 1
        db.ended = {"a"}
        waiters = JobWaiters(cast(Any, db), retry_s=0)
        task = asyncio.create_task(waiters.run())
        with waiters.watch("a") as a:
            waiters.ended()
            row = await asyncio.wait_for(a, 10)
        task.cancel()
        return str(row.id)

    assert asyncio.run(main()) == "a"
