"""The API's request and response bodies, as the client sends and reads them.

Response models ignore fields they do not know, so a newer server does not break an
older client; the project's tests hold every model against the server's live OpenAPI
document, so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled", "expired"]
BatchStatus = Literal["validating", "queued", "running", "completed", "failed", "cancelled"]
JobEvent = Literal["job.succeeded", "job.failed", "job.expired", "job.cancelled"]
BatchEvent = Literal["batch.completed", "batch.failed", "batch.cancelled"]

JOB_TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled", "expired"})
BATCH_TERMINAL: frozenset[str] = frozenset({"completed", "failed", "cancelled"})


class _Response(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Requests


class Webhook(_Request):
    """Where the server posts a job's terminal events; `events` None means all."""

    url: str
    events: list[JobEvent] | None = None


class BatchWebhook(_Request):
    """Where the server posts a batch's terminal event; `events` None means all."""

    url: str
    events: list[BatchEvent] | None = None


class JobRequest(_Request):
    """`POST /v1/jobs`: exactly one of `inputs` and `input_uri`."""

    model: str
    version: str = "production"
    inputs: dict[str, Any] | None = None
    input_uri: str | None = None
    webhook: Webhook | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    ttl_seconds: int | None = None


class BulkItem(_Request):
    """One item of `POST /v1/jobs/bulk`."""

    inputs: dict[str, Any]
    metadata: dict[str, str] = Field(default_factory=dict)


class BulkRequest(_Request):
    """`POST /v1/jobs/bulk`: many instances for one model version, all or nothing."""

    model: str
    version: str = "production"
    items: list[BulkItem]
    webhook: Webhook | None = None
    ttl_seconds: int | None = None


class BatchRequest(_Request):
    """`POST /v1/batches`: score every line of an S3 file."""

    model: str
    version: str = "production"
    input_uri: str
    output_uri: str
    webhook: BatchWebhook | None = None
    skip_invalid: bool = False


class UploadRequest(_Request):
    """`POST /v1/uploads`: the name of the file to upload (one path segment)."""

    filename: str


# Responses


class JobCreated(_Response):
    """The answer to a submit; `version` is the resolved version, never an alias."""

    id: str
    status: JobStatus
    model: str
    version: str
    created_at: datetime


class BulkCreated(_Response):
    """The answer to a bulk submit: job IDs in item order."""

    ids: list[str]


class JobError(_Response):
    """Why a job (or a batch) failed."""

    type: str
    message: str


class Job(_Response):
    """`GET /v1/jobs/{id}`."""

    id: str
    status: JobStatus
    model: str
    version: str
    outputs: dict[str, Any] | None
    output_uri: str | None
    output_url: str | None
    error: JobError | None
    attempts: int
    metadata: dict[str, str]
    batch_id: str | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None

    @property
    def done(self) -> bool:
        """Whether the job has ended (succeeded, failed, cancelled or expired)."""
        return self.status in JOB_TERMINAL


class JobPage(_Response):
    """`GET /v1/jobs`: one page, newest first."""

    items: list[Job]
    next_cursor: str | None


class Delivery(_Response):
    """One attempt to deliver one webhook event of a job."""

    id: str
    webhook_id: str
    event: str
    attempt: int
    state: Literal["pending", "delivered", "failed"]
    response_status: int | None
    error: str | None
    created_at: datetime


class DeliveryList(_Response):
    """`GET /v1/jobs/{id}/deliveries`."""

    items: list[Delivery]


class BatchCreated(_Response):
    """The 202 answer to `POST /v1/batches`."""

    id: str
    status: BatchStatus


class BatchCounts(_Response):
    """Lines of the input (`total`) and how many of their jobs ended how."""

    total: int
    succeeded: int
    failed: int
    cancelled: int
    expired: int

    @property
    def ended(self) -> int:
        """Lines whose job has ended, whatever the outcome."""
        return self.succeeded + self.failed + self.cancelled + self.expired


class InvalidLine(_Response):
    """One input line that failed validation."""

    line: int
    custom_id: str | None
    errors: list[dict[str, Any]]


class Batch(_Response):
    """`GET /v1/batches/{id}`."""

    id: str
    status: BatchStatus
    model: str
    version: str
    counts: BatchCounts
    invalid_lines: list[InvalidLine]
    input_uri: str
    output_uri: str | None
    output_url: str | None
    error: JobError | None
    resubmitted_from: str | None
    schedule_name: str | None
    scheduled_for: datetime | None
    created_at: datetime
    completed_at: datetime | None

    @property
    def done(self) -> bool:
        """Whether the batch has ended (completed, failed or cancelled)."""
        return self.status in BATCH_TERMINAL


class BatchPage(_Response):
    """`GET /v1/batches`: one page, newest first."""

    items: list[Batch]
    next_cursor: str | None


class BatchProgress(Batch):
    """A batch as its event stream shows it: the batch plus the server's estimate of
    when it completes (None until the server has measured a drain rate)."""

    estimated_completion_at: datetime | None = None


class BatchResult(_Response):
    """One line of a batch's results file, in input order."""

    custom_id: str | None
    job_id: str | None
    status: str
    outputs: dict[str, Any] | None = None
    error: Any = None


class Upload(_Response):
    """Where an upload goes: `uri` to name in a job or batch, `upload_url` to PUT to."""

    uri: str
    upload_url: str


class ModelSummary(_Response):
    """One item of `GET /v1/models`."""

    name: str
    aliases: dict[str, str]
    latest_version: str


class ModelList(_Response):
    """`GET /v1/models`."""

    items: list[ModelSummary]


class ModelFile(_Response):
    """One stored file of a model package."""

    uri: str
    sha256: str
    size_bytes: int


class ModelVersion(_Response):
    """One registered version of a model, with its request and output schemas."""

    name: str
    version: str
    files: dict[str, ModelFile]
    preprocessing: dict[str, Any]
    request_schema: dict[str, Any]
    output_schema: dict[str, Any]
    example: dict[str, Any] | None
    created_at: datetime


class Model(_Response):
    """`GET /v1/models/{name}`: a model's versions and where its aliases point."""

    name: str
    aliases: dict[str, str]
    versions: list[ModelVersion]


class ProblemFieldError(_Response):
    """One offending field of a 422: `loc` starts at the body field."""

    loc: list[str | int]
    msg: str
    type: str
    input: Any = None


class Event(_Response):
    """One Server-Sent Event of a job or batch stream, `data` parsed as JSON."""

    event: str
    id: str | None
    data: dict[str, Any]
