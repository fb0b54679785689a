"""Request and response bodies of the model registry routes (API.md is the contract)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


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
