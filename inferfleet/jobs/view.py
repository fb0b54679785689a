"""A job row in the shape clients see: the API's answers and webhook bodies share it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from inferfleet.jobs.schemas import JobError, JobView

# Turns an `s3://` URI into a presigned GET URL.
Presigner = Callable[[str], str]


def job_view(row: Any, presign: Presigner | None = None) -> JobView:
    """The API shape of a job row; `output_url` is filled in when `presign` is given."""
    output_url = None
    if row.output_uri is not None and presign is not None:
        output_url = presign(row.output_uri)
    return JobView(
        id=row.id,
        status=row.status,
        model=row.model,
        version=str(row.version),
        outputs=row.outputs,
        output_uri=row.output_uri,
        output_url=output_url,
        error=JobError(**row.error) if row.error else None,
        attempts=row.attempts,
        metadata=row.metadata,
        batch_id=row.batch_id,
        created_at=row.created_at,
        started_at=row.started_at,
        completed_at=row.completed_at,
    )
