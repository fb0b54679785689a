"""Request and response bodies of keys, tenants and uploads (API.md is the contract)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


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


class SecretRotated(BaseModel):
    """`POST /v1/tenants/{tenant}/webhook-secret`: the new secret, shown once; the
    previous one also signs until `previous_secret_expires_at`."""

    tenant: str
    webhook_secret: str
    previous_secret_expires_at: datetime
