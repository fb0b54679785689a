"""Publishing to the real S3 server and Postgres, and restoring what S3 lost."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from inferfleet.clients import objectstore
from inferfleet.models.publish import cache_path, publish, restore
from inferfleet.settings import Settings


def test_publish_uploads_registers_and_numbers_versions(
    publish_model, s3: Any, engine: Engine
) -> None:
    first = publish_model()
    second = publish_model(name=first.name)
    assert (first.version, second.version) == (1, 2)
    assert first.sha256 == second.sha256
    assert first.artifact_uri == second.artifact_uri  # content-addressed: stored once
    assert objectstore.exists(s3, first.artifact_uri)
    assert first.request_schema["required"] == [
        "transaction_amount",
        "merchant_category",
        "user_account_age_days",
        "hour_of_day",
    ]


def test_restore_reuploads_artifacts_the_object_store_lost(
    publish_model, s3: Any, engine: Engine, settings: Settings
) -> None:
    version = publish_model()
    bucket, key = objectstore.split_uri(version.artifact_uri)
    s3.delete_object(Bucket=bucket, Key=key)
    assert not objectstore.exists(s3, version.artifact_uri)

    report = restore(settings, engine, s3)
    assert f"{version.name} v1" in report.restored
    assert objectstore.exists(s3, version.artifact_uri)

    # Without the cached copy, the loss is reported, not hidden.
    s3.delete_object(Bucket=bucket, Key=key)
    cached = cache_path(settings.model_cache_dir, version.sha256, "model.onnx")
    kept = cached.read_bytes()
    cached.unlink()
    try:
        report = restore(settings, engine, s3)
        assert f"{version.name} v1" in report.missing
    finally:
        cached.write_bytes(kept)
        restore(settings, engine, s3)


def test_republishing_unchanged_bytes_registers_nothing_but_restores_lost_objects(
    publish_model, s3: Any, engine: Engine, settings: Settings, fraud_package
) -> None:
    first = publish_model()
    bucket, key = objectstore.split_uri(first.artifact_uri)
    s3.delete_object(Bucket=bucket, Key=key)  # an in-memory S3 server restarted

    again = publish(settings, engine, s3, fraud_package, name=first.name, reuse_current=True)

    assert again.version == first.version
    assert objectstore.exists(s3, first.artifact_uri)
