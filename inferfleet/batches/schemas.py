"""The API's shapes for batches and schedules (a schedule fires batches)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from inferfleet.jobs.schemas import JobError

BatchStatus = Literal["validating", "queued", "running", "completed", "failed", "cancelled"]
BatchEvent = Literal["batch.completed", "batch.failed", "batch.cancelled"]


class BatchWebhook(BaseModel):
    """Where to send the batch's terminal event; `events` omitted means all of them."""

    model_config = ConfigDict(extra="forbid")

    url: HttpUrl
    events: list[BatchEvent] | None = None


class ScheduleCreate(BaseModel):
    """`POST /v1/schedules` (admin): a cron schedule that fires one batch per run."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$",
        description="like model names; also the folder each firing writes under",
    )
    cron: str = Field(
        min_length=1,
        max_length=200,
        description="five fields (minute hour day-of-month month day-of-week) or a macro "
        "such as `@daily`, read in `timezone`",
    )
    timezone: str = Field(default="UTC", min_length=1, max_length=64, description="IANA name")
    tenant: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$", description="an existing tenant")
    model: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")
    version: str = Field(
        default="production",
        min_length=1,
        max_length=63,
        description="a version or an alias, resolved when each firing's batch is ingested",
    )
    input_uri: str = Field(
        max_length=1100,
        pattern=r"^s3://[^/]+/.*[^/]$",
        description="under the tenant's prefixes; `{date}` becomes the scheduled date "
        "(YYYY-MM-DD in `timezone`)",
    )
    output_prefix: str = Field(
        max_length=1000,
        pattern=r"^s3://[^/]+/.+",
        description="under the tenant's prefixes; each firing writes under "
        "`<output_prefix><name>/<scheduled time, e.g. 20261125T020000Z>/`",
    )
    webhook: BatchWebhook | None = None
    catch_up: bool = Field(
        default=True,
        description="a run missed while no scheduler ran fires once when one is back "
        "(only the latest missed run); false skips it",
    )


class ScheduleFields(BaseModel):
    """A stored schedule (table `schedules`): the one declaration of its fields, shared by
    the schedule the scheduler fires (`inferfleet.batches.schedules.Schedule`) and the
    API's view of it. Each adds `created_at` itself, so the view keeps its field order."""

    name: str
    cron: str
    timezone: str
    tenant: str
    model: str
    version: str
    input_uri: str
    output_prefix: str
    webhook: BatchWebhook | None
    catch_up: bool
    last_fired_for: datetime | None


class ScheduleView(ScheduleFields):
    """A stored schedule; `last_fired_for` is the latest scheduled time handled."""

    next_run_at: datetime | None
    created_at: datetime


class ScheduleList(BaseModel):
    """`GET /v1/schedules`."""

    items: list[ScheduleView]


class ScheduleFired(BaseModel):
    """`POST /v1/schedules/{name}/trigger`: the batch of the firing (`GET /v1/batches/{id}`
    follows it)."""

    id: str
    status: str
    schedule: str
    scheduled_for: datetime
    input_uri: str
    output_prefix: str
    created_at: datetime


class BatchSubmit(BaseModel):
    """`POST /v1/batches`: score every line of an S3 file on one model version."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=63)
    version: str = Field(default="production", min_length=1, max_length=63)
    input_uri: str = Field(
        max_length=1100,
        pattern=r"^s3://[^/]+/.*\.(jsonl|ndjson|csv|parquet)$",
        description="an s3:// JSONL, CSV or Parquet file under the tenant's prefixes "
        "(the format follows the extension)",
    )
    output_uri: str = Field(
        max_length=1000,
        pattern=r"^s3://[^/]+/.+",
        description="an s3:// folder under the tenant's prefixes; results.jsonl goes in it",
    )
    webhook: BatchWebhook | None = None
    skip_invalid: bool = Field(
        default=False, description="run the valid lines when some are invalid, instead of failing"
    )


class BatchCreated(BaseModel):
    """The 202 answer to `POST /v1/batches`: validation runs after the answer."""

    id: str
    status: BatchStatus


class BatchCounts(BaseModel):
    """Lines of the input file (`total`) and how many of their jobs ended how."""

    total: int
    succeeded: int
    failed: int
    cancelled: int
    expired: int


class InvalidLine(BaseModel):
    """One input line that failed validation, with every offending field."""

    line: int
    custom_id: str | None
    errors: list[dict[str, Any]]


class BatchView(BaseModel):
    """`GET /v1/batches/{id}`: every field present, `null` when it has no value."""

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


class BatchList(BaseModel):
    """`GET /v1/batches`: a page of batches, newest first."""

    items: list[BatchView]
    next_cursor: str | None
