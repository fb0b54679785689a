"""Publishing a model package: upload to S3, register the version, create its topics.

Artifacts are stored content-addressed, `s3://<bucket>/models/<name>/<sha256>/<file>`,
so an upload never overwrites different bytes under the same key. A copy goes into the
local model cache, which is also what `restore` re-uploads from when an in-memory S3
server has lost its objects.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from inferfleet import objectstore, registry
from inferfleet.errors import NotFoundError
from inferfleet.modelpkg import read_package
from inferfleet.registry import ModelVersion
from inferfleet.settings import Settings
from inferfleet.topics import dlq_topic, ensure_topics, model_topics

log = logging.getLogger(__name__)


def artifact_uri(bucket: str, name: str, sha256: str, filename: str) -> str:
    """Where a package's graph lives in the object store."""
    return f"s3://{bucket}/models/{name}/{sha256}/{filename}"


def cache_path(cache_dir: Path, sha256: str) -> Path:
    """Where a verified copy of an artifact lives on this machine."""
    return cache_dir / f"{sha256}.onnx"


def publish(
    settings: Settings,
    engine: Engine,
    s3: Any,
    folder: Path,
    *,
    name: str | None = None,
    alias: str | None = registry.DEFAULT_ALIAS,
    reuse_current: bool = False,
) -> ModelVersion:
    """Upload the package in `folder`, register its next version and point `alias` at it.

    With `reuse_current`, a package whose graph is byte-identical to the version `alias`
    already points at registers nothing and returns that version.
    """
    manifest = read_package(folder)
    name = name or manifest.name
    registry.check_model_name(name)
    graph = folder / manifest.model_file
    sha256 = objectstore.sha256_file(graph)
    uri = artifact_uri(settings.s3_bucket, name, sha256, manifest.model_file)
    if reuse_current and alias:
        current = _current(engine, name, alias)
        if current is not None and current.sha256 == sha256:
            return current
    if not objectstore.exists(s3, uri):
        objectstore.upload(s3, graph, uri)
    with engine.begin() as conn:
        version = registry.register(
            conn,
            name,
            artifact_uri=uri,
            sha256=sha256,
            size_bytes=graph.stat().st_size,
            manifest=manifest.raw,
        )
        if alias:
            registry.set_alias(conn, name, alias, version.version)
    topics = model_topics(name)
    ensure_topics(
        settings.kafka_bootstrap,
        topics + [dlq_topic(t) for t in topics],
        settings.topic_partitions,
        settings.topic_replication,
    )
    cached = cache_path(settings.model_cache_dir, sha256)
    if not cached.exists():
        cached.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(graph, cached)
    log.info("published %s v%d (%s)", name, version.version, uri)
    return version


def _current(engine: Engine, name: str, alias: str) -> ModelVersion | None:
    with engine.connect() as conn:
        try:
            return registry.resolve(conn, name, alias)
        except NotFoundError:
            return None


@dataclass(frozen=True)
class RestoreReport:
    """What `restore` found: versions present, re-uploaded, and lost for good."""

    present: list[str]
    restored: list[str]
    missing: list[str]


def restore(settings: Settings, engine: Engine, s3: Any) -> RestoreReport:
    """Re-upload registered artifacts that the object store no longer has, from the cache."""
    with engine.connect() as conn:
        versions = registry.list_versions(conn)
    report = RestoreReport([], [], [])
    for v in versions:
        label = f"{v.name} v{v.version}"
        if objectstore.exists(s3, v.artifact_uri):
            report.present.append(label)
            continue
        cached = cache_path(settings.model_cache_dir, v.sha256)
        if cached.exists() and objectstore.sha256_file(cached) == v.sha256:
            objectstore.upload(s3, cached, v.artifact_uri)
            report.restored.append(label)
        else:
            report.missing.append(label)
    return report
