"""Job rows as the API writes and reads them."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy import Connection, Select, func, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from api.plumbing.deps import Principal, Services
from api.plumbing.paging import newest_first
from api.plumbing.problems import ProblemError
from inferfleet.jobs.outbox import add_job_events
from inferfleet.jobs.schemas import JobList, JobView
from inferfleet.jobs.view import job_view
from inferfleet.tables import TERMINAL_STATUSES, jobs
from inferfleet.tenants.scoping import owned_by

# The longest a `GET /v1/jobs/{id}?wait=` (or `GET /v1/jobs?id=…&wait=`) holds its answer.
MAX_WAIT_S = 60.0
# The most jobs one `GET /v1/jobs?id=…` names.
MAX_IDS = 100


JSON_COLUMNS = frozenset(c.name for c in jobs.columns if isinstance(c.type, JSONB))


async def copy_jobs(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert new `queued` job rows (all with the same keys) with one `COPY`, in the
    caller's transaction: under half the CPU of a many-row `INSERT`.

    Postgres's errors come wrapped as SQLAlchemy's, as a statement's would (a value it
    cannot store is a `DataError`; a lost connection an `OperationalError`).
    """
    columns = list(rows[0])
    statement = f"COPY jobs ({', '.join(columns)}) FROM STDIN"
    raw = await conn.get_raw_connection()
    driver: psycopg.AsyncConnection[Any] = raw.driver_connection  # type: ignore[assignment]
    try:
        async with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                await copy.write_row(
                    [
                        Jsonb(row[c]) if c in JSON_COLUMNS and row[c] is not None else row[c]
                        for c in columns
                    ]
                )
    except psycopg.Error as e:
        raise DBAPIError.instance(statement, None, e, psycopg.Error) from e


# The rows of refused submissions, locked, so that no worker's claim or finish slips in
# between the look and the write.
LOCK_STATUSES = text("SELECT id, status FROM jobs WHERE id = ANY(:ids) FOR UPDATE")
STOPPABLE = ("queued", "running")


def stop_unqueued(conn: Connection, submissions: Sequence[Sequence[str]], message: str) -> set[int]:
    """Mark the jobs of submissions whose messages Kafka did not all acknowledge as
    failed, all or nothing per submission; the indexes of those that could not be stopped.

    A submission is stopped when every one of its jobs is still `queued` or `running`:
    all become `failed`, so a message that did land is skipped (the worker claims only
    `queued` or `running` jobs, and a result is written only to a `running` one). A
    submission one of whose jobs has already ended ran from a message that landed
    without its acknowledgement: it is left as it is, and the sweep produces the
    messages of its jobs still `queued` (they have no `produced_at`).
    """
    ids = [i for ids in submissions for i in ids]
    statuses = {r.id: r.status for r in conn.execute(LOCK_STATUSES, {"ids": ids})}
    ran = {
        n for n, ids in enumerate(submissions) if any(statuses.get(i) not in STOPPABLE for i in ids)
    }
    stopped = [i for n, ids in enumerate(submissions) if n not in ran for i in ids]
    if stopped:
        conn.execute(
            jobs.update()
            .where(jobs.c.id.in_(stopped), jobs.c.status.in_(STOPPABLE))
            .values(
                status="failed",
                error={"type": "queue_unavailable", "message": message},
                completed_at=func.now(),
            )
        )
    return ran


def _job(tenant: str | None, job_id: str) -> Select[Any]:
    return select(jobs).where(jobs.c.id == job_id, owned_by(jobs, tenant))


def get_job(conn: Connection, tenant: str | None, job_id: str) -> Any | None:
    """The job row if it exists and belongs to `tenant` (None: any), else None."""
    return conn.execute(_job(tenant, job_id)).one_or_none()


def list_jobs(
    conn: Connection,
    tenant: str | None,
    *,
    limit: int,
    cursor: str | None = None,
    status: str | None = None,
    model: str | None = None,
    batch_id: str | None = None,
) -> tuple[list[Any], str | None]:
    """A page of `tenant`'s jobs, newest first, and the cursor of the next page (or None)."""
    query = select(jobs).where(owned_by(jobs, tenant))
    if status is not None:
        query = query.where(jobs.c.status == status)
    if model is not None:
        query = query.where(jobs.c.model == model)
    if batch_id is not None:
        query = query.where(jobs.c.batch_id == batch_id)
    return newest_first(conn, query, jobs, limit, cursor)


def cancel_job(
    conn: Connection, tenant: str | None, job_id: str, retry_window_s: float
) -> tuple[bool, Any | None]:
    """Cancel a queued job: (True, row) if cancelled, (False, row) if it was not queued.

    The row is None when the job does not exist for `tenant`. A worker that claims the
    job afterwards skips it: only `queued` and `running` jobs are claimed. The job's
    `job.cancelled` event is queued in the same transaction.
    """
    row = conn.execute(
        jobs.update()
        .where(jobs.c.id == job_id, owned_by(jobs, tenant), jobs.c.status == "queued")
        .values(status="cancelled", completed_at=func.now())
        .returning(jobs)
    ).one_or_none()
    if row is not None:
        add_job_events(conn, [job_id], retry_window_s)
        return True, row
    return False, get_job(conn, tenant, job_id)


def page(
    services: Services,
    principal: Principal,
    *,
    limit: int,
    cursor: str | None,
    status: str | None,
    model: str | None,
    batch_id: str | None,
) -> JobList:
    """The caller's jobs, newest first, a page at a time."""
    with services.engine.connect() as conn:
        rows, next_cursor = list_jobs(
            conn,
            principal.reads,
            limit=limit,
            cursor=cursor,
            status=status,
            model=model,
            batch_id=batch_id,
        )
    presign = services.presigner()
    return JobList(items=[job_view(r, presign) for r in rows], next_cursor=next_cursor)


def cancel(services: Services, principal: Principal, job_id: str) -> JobView:
    """A queued job becomes `cancelled`; 404 for a job the caller cannot see, 409 for a
    running or finished one."""
    with services.engine.begin() as conn:
        cancelled, row = cancel_job(
            conn, principal.reads, job_id, services.settings.webhook_retry_window_s
        )
    if row is None:
        raise ProblemError(404, "Not Found", f"no job {job_id!r}")
    if not cancelled:
        raise ProblemError(
            409,
            "Conflict",
            f"job {job_id} is {row.status}; only a queued job can be cancelled",
            job_status=row.status,
        )
    services.metrics.jobs_cancelled.labels(model=row.model).inc()
    return job_view(row, services.presigner())


async def wait_for_job(
    services: Services, principal: Principal, job_id: str, wait: float
) -> JobView:
    """The job as it is now; with `wait`, held until it is terminal or `wait` seconds
    (at most MAX_WAIT_S) pass. 404 for a job the caller cannot see.

    Reads are coalesced with the other requests' (`api.plumbing.reader`). A waiting
    request costs Postgres one read when it starts, and one more only if nothing woke it
    by its deadline (`api.plumbing.waiters`).
    """
    rows = await _wait_rows(services, principal, [job_id], wait)
    if job_id not in rows:
        raise ProblemError(404, "Not Found", f"no job {job_id!r}")
    return job_view(rows[job_id], services.presigner())


async def wait_for_jobs(
    services: Services, principal: Principal, job_ids: Sequence[str], wait: float
) -> JobList:
    """The named jobs the caller can see, in the order named (each once; unknown and
    other tenants' IDs are left out); with `wait`, held until every one of them is
    terminal or `wait` seconds (at most MAX_WAIT_S) pass, then answered as they are.
    Read and woken as a single job's long-poll is (`wait_for_job`)."""
    named = list(dict.fromkeys(job_ids))
    rows = await _wait_rows(services, principal, named, wait)
    presign = services.presigner()
    return JobList(items=[job_view(rows[i], presign) for i in named if i in rows], next_cursor=None)


async def _wait_rows(
    services: Services, principal: Principal, job_ids: Sequence[str], wait: float
) -> dict[str, Any]:
    """The rows of `job_ids` (distinct) the caller can see, by ID, once each has ended
    or `wait` seconds (at most MAX_WAIT_S) passed.

    Each future is registered before the first read, so an end after that read is not
    missed; jobs nothing woke by the deadline are read again (and left out if gone).
    """
    hold = min(wait, MAX_WAIT_S)
    with ExitStack() as watching:
        woken = {i: watching.enter_context(services.waiters.watch(i)) for i in job_ids}
        read = await asyncio.gather(*(services.jobs.read(principal.reads, i) for i in job_ids))
        rows = {i: row for i, row in zip(job_ids, read, strict=True) if row is not None}
        open_ = [i for i, row in rows.items() if row.status not in TERMINAL_STATUSES]
        if open_ and hold > 0:
            with services.metrics.long_polls.track_inprogress():
                await asyncio.wait([woken[i] for i in open_], timeout=hold)
            late = [i for i in open_ if not woken[i].done()]
            rows.update({i: woken[i].result() for i in open_ if woken[i].done()})
            again = await asyncio.gather(*(services.jobs.read(principal.reads, i) for i in late))
            for job_id, row in zip(late, again, strict=True):
                if row is None:
                    del rows[job_id]
                else:
                    rows[job_id] = row
    return rows
