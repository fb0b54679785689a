"""Registering a model package already in S3: fetched, checked as the CLI checks it,
published as the next version."""

from __future__ import annotations

import tempfile
from pathlib import Path

from botocore.exceptions import ParamValidationError

from api.plumbing.deps import Services
from inferfleet.errors import FieldError, InvalidInputError
from inferfleet.models import registry
from inferfleet.models.publish import fetch_package, publish
from inferfleet.models.registry import ModelVersion
from inferfleet.models.schemas import RegisterVersion


def register(services: Services, name: str, body: RegisterVersion) -> ModelVersion:
    """The package at `body.package_uri` as the next version of `name` (422 for a URI S3
    cannot address)."""
    registry.check_model_name(name)
    with tempfile.TemporaryDirectory(prefix="inferfleet-package-") as tmp:
        try:
            folder = fetch_package(services.s3, body.package_uri, Path(tmp))
        except (ValueError, ParamValidationError) as e:
            # A URI that S3 cannot address (a malformed bucket name, say) names no package.
            error = FieldError(("package_uri",), f"cannot be read: {e}", "s3_uri", body.package_uri)
            raise InvalidInputError([error]) from e
        version = publish(
            services.settings, services.engine, services.s3, folder, name=name, alias=body.alias
        )
    # Other processes hear of it from Postgres; this one forgets before answering.
    services.versions.clear()
    return version
