"""api.plumbing.reader.JobReader: the reads of one loop turn are one query; tenancy holds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy.exc import OperationalError

from api.plumbing.reader import JobReader


class FakeDb:
    """Jobs by id, each of tenant `t` unless named `other-…`; records each query's ids."""

    def __init__(self, fail: bool = False) -> None:
        self.asked: list[list[str]] = []
        self.fail = fail

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[Any]:
        yield self

    async def execute(self, statement: Any, params: dict[str, Any]) -> Any:
        self.asked.append(sorted(params["ids"]))
        if self.fail:
            raise OperationalError("SELECT", {}, Exception("connection refused"))
        rows = [
            SimpleNamespace(id=i, tenant="u" if i.startswith("other") else "t")
            for i in params["ids"]
            if i != "missing"
        ]
        return SimpleNamespace(all=lambda: rows)


def test_reads_asked_in_one_turn_are_one_query_and_each_gets_its_own_row() -> None:
    db = FakeDb()

    async def main() -> list[Any]:
        reader = JobReader(cast(Any, db))
        return await asyncio.gather(
            reader.read("t", "a"),
            reader.read("t", "b"),
            reader.read(None, "a"),
            reader.read("t", "missing"),
        )

    a, b, a_again, missing = asyncio.run(main())

    assert db.asked == [["a", "b", "missing"]]
    assert (a.id, b.id, a_again.id, missing) == ("a", "b", "a", None)


def test_another_tenants_job_reads_as_none_and_an_admin_sees_it() -> None:
    db = FakeDb()

    async def main() -> list[Any]:
        reader = JobReader(cast(Any, db))
        return await asyncio.gather(reader.read("t", "other-1"), reader.read(None, "other-1"))

    hidden, seen = asyncio.run(main())

    assert hidden is None
    assert seen.id == "other-1"


def test_reads_of_later_turns_are_later_queries() -> None:
    db = FakeDb()

    async def main() -> None:
        reader = JobReader(cast(Any, db))
        await reader.read("t", "a")
        await reader.read("t", "b")

    asyncio.run(main())

    assert db.asked == [["a"], ["b"]]


def test_a_failed_query_fails_every_read_it_carried() -> None:
    db = FakeDb(fail=True)

    async def main() -> list[Any]:
        reader = JobReader(cast(Any, db))
        return await asyncio.gather(
            reader.read("t", "a"), reader.read("t", "b"), return_exceptions=True
        )

    answers = asyncio.run(main())

    assert [type(a) for a in answers] == [OperationalError, OperationalError]
