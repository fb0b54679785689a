"""Request and response bodies of jobs and their webhook deliveries (API.md is the contract)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled", "expired"]
JobEvent = Literal["job.succeeded", "job.failed", "job.expired", "job.cancelled"]
Metadata = Annotated[dict[str, str], Field(max_length=16)]


class Webhook(BaseModel):
    """Where to send the job's terminal events; `events` omitted means all of them."""

    model_config = ConfigDict(extra="forbid")

    url: HttpUrl
    events: list[JobEvent] | None = None


class JobSubmit(BaseModel):
    """`POST /v1/jobs`: one instance for one model version."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=63)
    version: str = Field(default="production", min_length=1, max_length=63)
    inputs: dict[str, Any] | None = None
    input_uri: str | None = Field(
        default=None,
        max_length=1100,  # s3:// + a bucket (63) + a key (S3 allows 1,024 bytes)
        pattern=r"^s3://[^/]+/.*[^/]$",
        description="an s3:// JSON object under the tenant's prefixes, read by the worker",
    )
    webhook: Webhook | None = None
    metadata: Metadata = Field(default_factory=dict)
    ttl_seconds: int | None = Field(default=None, ge=1, le=30 * 24 * 3600)

    @model_validator(mode="after")
    def _one_input(self) -> JobSubmit:
        if (self.inputs is None) == (self.input_uri is None):
            raise ValueError("exactly one of inputs and input_uri is required")
        return self


class BulkItem(BaseModel):
    """One item of `POST /v1/jobs/bulk`."""

    model_config = ConfigDict(extra="forbid")

    inputs: dict[str, Any]
    metadata: Metadata = Field(default_factory=dict)


class BulkSubmit(BaseModel):
    """`POST /v1/jobs/bulk`: many instances for one model version, all or nothing."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=63)
    version: str = Field(default="production", min_length=1, max_length=63)
    items: list[BulkItem] = Field(min_length=1)
    webhook: Webhook | None = None
    ttl_seconds: int | None = Field(default=None, ge=1, le=30 * 24 * 3600)


class JobCreated(BaseModel):
    """The 202 answer to a submit; `version` is the resolved version, never an alias."""

    id: str
    status: JobStatus
    model: str
    version: str
    created_at: datetime


class BulkCreated(BaseModel):
    """The 202 answer to a bulk submit: job IDs in item order."""

    ids: list[str]


class JobError(BaseModel):
    """Why a job failed."""

    type: str
    message: str


class JobView(BaseModel):
    """`GET /v1/jobs/{id}`: every field present, `null` when it has no value."""

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


class JobList(BaseModel):
    """`GET /v1/jobs`: a page of jobs, newest first; or the jobs `?id=` named, in that order."""

    items: list[JobView]
    next_cursor: str | None


class DeliveryView(BaseModel):
    """One attempt to deliver one webhook event."""

    id: str
    webhook_id: str
    event: str
    attempt: int
    state: Literal["pending", "delivered", "failed"]
    response_status: int | None
    error: str | None
    created_at: datetime


class DeliveryList(BaseModel):
    """`GET /v1/jobs/{id}/deliveries`: every attempt of every event of the job, oldest
    first."""

    items: list[DeliveryView]
