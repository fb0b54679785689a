"""The database side of a submit group (`api.plumbing.groupcommit.GroupStore`), on the
asyncio engine: one transaction per step, whatever the number of submissions."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from api.plumbing.groupcommit import Submission
from api.plumbing.idempotency import Binding, Bound, bind_all, unbind_all
from api.plumbing.store import copy_jobs, stop_unqueued
from inferfleet.clients.db import autocommit
from inferfleet.jobs.produced import mark_produced


def _bindings(group: Sequence[Submission]) -> list[tuple[int, Binding, str]]:
    """(index, binding, first job ID) of each submission of `group` with a key."""
    return [(i, s.binding, s.rows[0]["id"]) for i, s in enumerate(group) if s.binding is not None]


def bind_group(conn: Connection, group: Sequence[Submission]) -> set[int]:
    """Bind the keys of `group`'s submissions in the caller's transaction; the indexes of
    those whose key another submit holds (their rows are not to be inserted)."""
    keyed = _bindings(group)
    bound = bind_all(conn, [(b, Bound(tuple(group[i].ids))) for i, b, _ in keyed])
    return {i for i, b, _ in keyed if (b.tenant, b.key) not in bound}


def unqueue_group(conn: Connection, failed: Sequence[Submission], message: str) -> set[int]:
    """`GroupStore.unqueued` in the caller's transaction: the stopped submissions' keys
    are released, the others' stay bound to the jobs that run."""
    ran = stop_unqueued(conn, [s.ids for s in failed], message)
    stopped = [s for n, s in enumerate(failed) if n not in ran]
    unbind_all(conn, [(binding, job_id) for _, binding, job_id in _bindings(stopped)])
    return ran


class SubmitRows:
    """`GroupStore` over the API's asyncio engine.

    The `produced_at` update is one statement, so it runs in autocommit: atomic on its
    own, one round trip instead of three (`BEGIN`, the statement, `COMMIT`). A group's
    insert is a transaction: its keys are bound, then its rows copied in (`COPY`), and
    they land together.
    """

    def __init__(self, db: AsyncEngine) -> None:
        self._db = db
        self._alone = autocommit(db)

    async def insert(self, group: Sequence[Submission]) -> set[int]:
        async with self._db.begin() as conn:
            taken = await conn.run_sync(bind_group, group)
            rows = [row for i, s in enumerate(group) if i not in taken for row in s.rows]
            if rows:
                await copy_jobs(conn, rows)
            return taken

    async def produced(self, ids: Sequence[str]) -> None:
        async with self._alone.connect() as conn:
            await conn.run_sync(mark_produced, ids)

    async def unqueued(self, failed: Sequence[Submission], message: str) -> set[int]:
        async with self._db.begin() as conn:
            return await conn.run_sync(unqueue_group, failed, message)
