"""Single-job reads, coalesced: the reads asked for in one turn of the event loop go to
Postgres as one `id = ANY(:ids)` query.

Under load, many `GET /v1/jobs/{id}` arrive between two turns of the loop; each would
take a pooled connection and a round trip of its own. `JobReader.read` instead parks
the request on a future, and one task per turn reads every parked id at once and hands
each request its row (or None). Tenancy is applied to the rows afterwards, by the same
rule as `owned_by` (`may_see`): another tenant's job is None, exactly as if the query had said so.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import String, any_, bindparam, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncEngine

from inferfleet.tables import jobs
from inferfleet.tenants.scoping import may_see

BY_IDS = select(jobs).where(jobs.c.id == any_(bindparam("ids", type_=ARRAY(String))))


class JobReader:
    """Reads job rows by id over `db`, one query per loop turn for all of them."""

    def __init__(self, db: AsyncEngine) -> None:
        self._db = db
        self._parked: dict[str, list[asyncio.Future[Any]]] = {}
        self._reading: set[asyncio.Task[None]] = set()
        self.queries = 0

    async def read(self, tenant: str | None, job_id: str) -> Any | None:
        """The job row if it exists and belongs to `tenant` (None: any), else None."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._parked:
            loop.call_soon(self._read_parked)
        self._parked.setdefault(job_id, []).append(future)
        row = await future
        if row is None or not may_see(tenant, row.tenant):
            return None
        return row

    def _read_parked(self) -> None:
        parked, self._parked = self._parked, {}
        task = asyncio.create_task(self._answer(parked))
        self._reading.add(task)
        task.add_done_callback(self._reading.discard)

    async def _answer(self, parked: dict[str, list[asyncio.Future[Any]]]) -> None:
        self.queries += 1
        waiting = [f for futures in parked.values() for f in futures]
        try:
            async with self._db.connect() as conn:
                rows = (await conn.execute(BY_IDS, {"ids": list(parked)})).all()
        except asyncio.CancelledError:
            for future in waiting:
                future.cancel()
            raise
        except Exception as e:  # noqa: BLE001 - each request answers it (503 for an outage)
            for future in waiting:
                if not future.done():
                    future.set_exception(e)
            return
        found = {row.id: row for row in rows}
        for job_id, futures in parked.items():
            for future in futures:
                if not future.done():
                    future.set_result(found.get(job_id))
