"""A batch row in the shape clients see, with the counts of its jobs: the API's answers
and the bodies of batch webhooks share it.

Counts are read from the jobs themselves (`GROUP BY status` over the batch's rows, found
through the `jobs_batch_line` index), so they move as jobs finish.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, select, text

from inferfleet.batches.schemas import BatchCounts, BatchView, InvalidLine
from inferfleet.jobs.schemas import JobError
from inferfleet.jobs.view import Presigner
from inferfleet.tables import batches
from inferfleet.tenants.scoping import owned_by

COUNTS = text(
    """
    SELECT batch_id, status, count(*) AS n FROM jobs
     WHERE batch_id = ANY(:ids)
     GROUP BY batch_id, status
    """
)


def job_counts(conn: Connection, batch_ids: Sequence[str]) -> dict[str, dict[str, int]]:
    """How many jobs of each batch are in each status, by batch ID (absent: no jobs)."""
    counts: dict[str, dict[str, int]] = {}
    if batch_ids:
        for row in conn.execute(COUNTS, {"ids": list(batch_ids)}):
            counts.setdefault(row.batch_id, {})[row.status] = row.n
    return counts


def unfinished(counts: Mapping[str, int]) -> int:
    """Jobs that have not ended yet."""
    return counts.get("queued", 0) + counts.get("running", 0)


def shown_status(stored: str, counts: Mapping[str, int]) -> str:
    """The status clients see: a `queued` batch is `running` once any job of it has
    been taken; otherwise the stored status."""
    if stored == "queued" and any(n for status, n in counts.items() if status != "queued"):
        return "running"
    return stored


def batch_view(row: Any, counts: Mapping[str, int], presign: Presigner | None = None) -> BatchView:
    """The API shape of a batch row and its job counts; `output_url` is filled in when
    `presign` is given."""
    output_url = None
    if row.output_uri is not None and presign is not None:
        output_url = presign(row.output_uri)
    return BatchView(
        id=row.id,
        status=shown_status(row.status, counts),
        model=row.model,
        version=row.version,
        counts=BatchCounts(
            total=row.total,
            succeeded=counts.get("succeeded", 0),
            failed=counts.get("failed", 0),
            cancelled=counts.get("cancelled", 0),
            expired=counts.get("expired", 0),
        ),
        invalid_lines=[InvalidLine(**entry) for entry in row.invalid_lines],
        input_uri=row.input_uri,
        output_uri=row.output_uri,
        output_url=output_url,
        error=JobError(**row.error) if row.error else None,
        resubmitted_from=row.resubmitted_from,
        schedule_name=row.schedule_name,
        scheduled_for=row.scheduled_for,
        created_at=row.created_at,
        completed_at=row.completed_at,
    )


def get_batch(conn: Connection, tenant: str | None, batch_id: str) -> Any | None:
    """The batch row if it exists and belongs to `tenant` (None: any), else None."""
    return conn.execute(
        select(batches).where(batches.c.id == batch_id, owned_by(batches, tenant))
    ).one_or_none()


def views(conn: Connection, rows: Sequence[Any], presign: Presigner | None) -> list[BatchView]:
    """The API shape of batch rows, their counts read in one statement."""
    counts = job_counts(conn, [r.id for r in rows])
    return [batch_view(r, counts.get(r.id, {}), presign) for r in rows]


def load_view(
    conn: Connection, tenant: str | None, batch_id: str, presign: Presigner | None
) -> BatchView | None:
    """The batch as `GET /v1/batches/{id}` returns it, or None if `tenant` has no such
    batch."""
    row = get_batch(conn, tenant, batch_id)
    return views(conn, [row], presign)[0] if row is not None else None
