"""Request and response bodies of the HTTP API (API.md is the contract)."""

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


class UploadCreate(BaseModel):
    """`POST /v1/uploads`: the name of the file to upload (one path segment)."""

    model_config = ConfigDict(extra="forbid")

    filename: str = Field(
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$",
        description="letters, digits, `.`, `_` and `-`; no slash, not starting with a dot",
    )


class UploadCreated(BaseModel):
    """Where the upload goes: `uri` to name in a job, `upload_url` to `PUT` the bytes to."""

    uri: str
    upload_url: str


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
    """`GET /v1/jobs`: a page of jobs, newest first."""

    items: list[JobView]
    next_cursor: str | None


class ModelFile(BaseModel):
    """One stored file of a model package."""

    uri: str
    sha256: str
    size_bytes: int


class ModelVersionView(BaseModel):
    """One registered version of a model."""

    name: str
    version: str
    files: dict[str, ModelFile]
    preprocessing: dict[str, Any]
    request_schema: dict[str, Any]
    output_schema: dict[str, Any]
    example: dict[str, Any] | None
    created_at: datetime


class ModelView(BaseModel):
    """`GET /v1/models/{name}`: a model's versions and where its aliases point."""

    name: str
    aliases: dict[str, str]
    versions: list[ModelVersionView]


class ModelSummary(BaseModel):
    """One item of `GET /v1/models`."""

    name: str
    aliases: dict[str, str]
    latest_version: str


class ModelList(BaseModel):
    """`GET /v1/models`."""

    items: list[ModelSummary]


class RegisterVersion(BaseModel):
    """`POST /v1/models/{name}/versions`: a package folder already in S3."""

    model_config = ConfigDict(extra="forbid")

    package_uri: str = Field(
        pattern=r"^s3://[^/]+/.+", description="s3://bucket/prefix/ holding manifest.json"
    )
    alias: str | None = Field(default=None, description="an alias to point at the new version")


class AliasUpdate(BaseModel):
    """`PUT /v1/models/{name}/aliases/{alias}`."""

    model_config = ConfigDict(extra="forbid")

    version: str = Field(pattern=r"^[1-9][0-9]*$")


class AliasView(BaseModel):
    """Where an alias points."""

    name: str
    alias: str
    version: str


class KeyCreate(BaseModel):
    """`POST /v1/keys`."""

    model_config = ConfigDict(extra="forbid")

    tenant: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    scope: Literal["jobs", "admin"]


class KeyView(BaseModel):
    """A stored key, without the key itself."""

    id: str
    tenant: str
    scope: Literal["jobs", "admin"]
    created_at: datetime
    revoked_at: datetime | None


class KeyCreated(KeyView):
    """The answer to `POST /v1/keys`: the only time the key is shown."""

    key: str
    webhook_secret: str


class KeyList(BaseModel):
    """`GET /v1/keys`."""

    items: list[KeyView]


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


class SecretRotated(BaseModel):
    """`POST /v1/tenants/{tenant}/webhook-secret`: the new secret, shown once; the
    previous one also signs until `previous_secret_expires_at`."""

    tenant: str
    webhook_secret: str
    previous_secret_expires_at: datetime
