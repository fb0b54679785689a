"""Publishing a model package: check it, upload its files, register the version.

Every file is stored content-addressed, `s3://<bucket>/models/<name>/<sha256>/<file>`,
so an upload never overwrites different bytes under the same key. A copy of each goes
into the local model cache, which is also what `restore` re-uploads from when an
in-memory S3 server has lost its objects.

Before anything is uploaded, `check_package` opens the graph with ONNX Runtime, checks
that the declared preprocessing produces every graph input (name, element type, rank),
that the output schema names real graph outputs, and runs the manifest's example.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from inferfleet.clients import objectstore
from inferfleet.clients.topics import dlq_topic, ensure_topics, model_topics
from inferfleet.errors import ArtifactError, NotFoundError
from inferfleet.models import registry
from inferfleet.models.package import MANIFEST, Manifest, read_manifest_files, read_package
from inferfleet.models.preprocessing import make_preprocessor, mismatches, split_outputs
from inferfleet.models.registry import ModelVersion
from inferfleet.models.schemas import ModelFile
from inferfleet.models.sessions import graph_inputs, graph_outputs, open_session
from inferfleet.models.validation import validate_instance, validator_for
from inferfleet.settings import Settings

log = logging.getLogger(__name__)


def artifact_uri(bucket: str, name: str, sha256: str, filename: str) -> str:
    """Where a package file lives in the object store."""
    return f"s3://{bucket}/models/{name}/{sha256}/{filename}"


def cache_path(cache_dir: Path, sha256: str, filename: str) -> Path:
    """Where a verified copy of a package file lives on this machine."""
    return cache_dir / f"{sha256}{Path(filename).suffix}"


def check_package(settings: Settings, folder: Path) -> Manifest:
    """Read the package in `folder` and prove the graph can serve its requests.

    Raises ArtifactError naming the first input, output or file that does not fit.
    """
    manifest = read_package(folder)
    files = {name: folder / name for name in manifest.files}
    session = open_session(files[manifest.model_file], settings, cpu_only=True)
    inputs = graph_inputs(session)
    outputs = [spec.name for spec in graph_outputs(session)]
    preprocess = make_preprocessor(manifest.preprocessing, inputs, files)
    problems = mismatches(preprocess.outputs(), inputs)
    if manifest.preprocessing.get("kind", "none") == "none":
        required = set(manifest.request_schema.get("required", []))
        problems += [
            f"graph input {spec.name!r} is not a required field of request_schema"
            for spec in inputs
            if spec.name not in required
        ]
    problems += [
        f"output_schema names {name!r}, which the graph does not output (it outputs {outputs})"
        for name in manifest.output_schema.get("properties", {})
        if name not in outputs
    ]
    if problems:
        raise ArtifactError(f"{folder.name}: " + "; ".join(problems))
    try:
        feeds = preprocess([manifest.example])
        arrays = session.run(outputs, {spec.name: feeds[spec.name] for spec in inputs})
        result = split_outputs(outputs, arrays, 1)[0]
    except Exception as e:  # whatever the runtime raised is the package's fault
        raise ArtifactError(f"{folder.name}: the graph fails on the manifest's example: {e}") from e
    errors = validate_instance(validator_for(manifest.output_schema), result, ("outputs",))
    if errors:
        raise ArtifactError(
            f"{folder.name}: the example's result breaks output_schema at "
            f"{'.'.join(map(str, errors[0].loc))}: {errors[0].msg}"
        )
    return manifest


def fetch_package(s3: Any, uri: str, dest: Path) -> Path:
    """Download the package folder at `uri` (its manifest and the files it names) to `dest`."""
    prefix = uri.rstrip("/") + "/"
    objectstore.download(s3, prefix + MANIFEST, dest / MANIFEST)
    for filename in read_manifest_files(dest):
        objectstore.download(s3, prefix + filename, dest / filename)
    return dest


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
    """Check the package in `folder`, upload it, register its next version, move `alias`.

    With `reuse_current`, a package whose files are byte-identical to the version
    `alias` already points at registers nothing and returns that version.
    """
    manifest = check_package(settings, folder)
    name = name or manifest.name
    registry.check_model_name(name)
    files: dict[str, ModelFile] = {}
    for filename in manifest.files:
        path = folder / filename
        sha256 = objectstore.sha256_file(path)
        uri = artifact_uri(settings.s3_bucket, name, sha256, filename)
        # Uploaded even when nothing new is registered: an in-memory S3 server may have
        # lost the objects of a version the registry still has.
        if not objectstore.exists(s3, uri):
            objectstore.upload(s3, path, uri)
        files[filename] = ModelFile(uri=uri, sha256=sha256, size_bytes=path.stat().st_size)
        cached = cache_path(settings.model_cache_dir, sha256, filename)
        if not cached.exists():
            cached.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, cached)
    current = _current(engine, name, alias) if reuse_current and alias else None
    if current is not None and current.files == files:
        version = current
    else:
        with engine.begin() as conn:
            version = registry.register(conn, name, manifest=manifest.raw, files=files)
            if alias:
                registry.set_alias(conn, name, alias, version.version)
        log.info("published %s v%d (%s)", name, version.version, version.artifact_uri)
    topics = model_topics(name)
    ensure_topics(
        settings,
        topics + [dlq_topic(t) for t in topics],
        settings.topic_partitions,
        settings.topic_replication,
    )
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
    """Re-upload registered files that the object store no longer has, from the cache."""
    with engine.connect() as conn:
        versions = registry.list_versions(conn)
    report = RestoreReport([], [], [])
    for v in versions:
        label = f"{v.name} v{v.version}"
        gone = [(f, ref) for f, ref in v.files.items() if not objectstore.exists(s3, ref.uri)]
        if not gone:
            report.present.append(label)
            continue
        lost = False
        for filename, ref in gone:
            cached = cache_path(settings.model_cache_dir, ref.sha256, filename)
            if cached.exists() and objectstore.sha256_file(cached) == ref.sha256:
                objectstore.upload(s3, cached, ref.uri)
            else:
                lost = True
        (report.missing if lost else report.restored).append(label)
    return report
