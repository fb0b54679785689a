"""Job rows as the API writes and reads them, and the listing of batches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from api.plumbing.paging import newest_first
from inferfleet.jobs.outbox import add_job_events
from inferfleet.tables import batches, jobs
from inferfleet.tenants.scoping import owned_by


def insert_jobs(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert new `queued` job rows in one statement."""
    conn.execute(jobs.insert(), list(rows))


def fail_unqueued(engine: Engine, ids: Sequence[str], message: str) -> None:
    """Mark jobs whose messages Kafka did not take as failed, so none stays `queued`.

    A message that did land for one of them is then skipped by the worker, which only
    takes `queued` or `running` jobs.
    """
    with engine.begin() as conn:
        conn.execute(
            jobs.update()
            .where(jobs.c.id.in_(list(ids)), jobs.c.status == "queued")
            .values(
                status="failed",
                error={"type": "queue_unavailable", "message": message},
                completed_at=func.now(),
            )
        )


def get_job(conn: Connection, tenant: str | None, job_id: str) -> Any | None:
    """The job row if it exists and belongs to `tenant` (None: any), else None."""
    return conn.execute(
        select(jobs).where(jobs.c.id == job_id, owned_by(jobs, tenant))
    ).one_or_none()


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


def list_batches(
    conn: Connection,
    tenant: str | None,
    *,
    limit: int,
    cursor: str | None = None,
    status: str | None = None,
    model: str | None = None,
) -> tuple[list[Any], str | None]:
    """A page of `tenant`'s batches, newest first, and the cursor of the next page (or
    None)."""
    query = select(batches).where(owned_by(batches, tenant))
    if status is not None:
        query = query.where(batches.c.status == status)
    if model is not None:
        query = query.where(batches.c.model == model)
    return newest_first(conn, query, batches, limit, cursor)
