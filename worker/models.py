"""The models a worker holds: fetched from S3 into a local cache, opened, kept in an LRU.

The cache is content-addressed (`<sha256>.onnx`), so a restart reuses what it already
verified and two versions with the same bytes share one file.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from inferfleet import registry
from inferfleet.objectstore import download_verified, sha256_file
from inferfleet.registry import ModelVersion
from inferfleet.settings import Settings
from worker.runtime import LoadedModel, open_model

log = logging.getLogger(__name__)


def cached_artifact(cache_dir: Path, version: ModelVersion, s3: Any) -> Path:
    """The local path of `version`'s graph, downloading and verifying it if needed."""
    path = cache_dir / f"{version.sha256}.onnx"
    if path.exists() and sha256_file(path) == version.sha256:
        return path
    log.info("downloading %s v%d from %s", version.name, version.version, version.artifact_uri)
    download_verified(s3, version.artifact_uri, path, version.sha256)
    return path


class ModelStore:
    """Loaded models by (name, version), at most `settings.model_cache_versions` of them."""

    def __init__(self, settings: Settings, engine: Engine, s3: Any) -> None:
        self._settings = settings
        self._engine = engine
        self._s3 = s3
        self._loaded: OrderedDict[tuple[str, int], LoadedModel] = OrderedDict()

    def load_alias(self, name: str, alias: str = registry.DEFAULT_ALIAS) -> LoadedModel:
        """Resolve `alias` of `name` and load that version."""
        with self._engine.connect() as conn:
            version = registry.resolve(conn, name, alias)
        return self.get(name, version.version, version)

    def get(self, name: str, version: int, known: ModelVersion | None = None) -> LoadedModel:
        """The loaded model, loading it (and evicting the least recently used) if needed."""
        key = (name, version)
        if key in self._loaded:
            self._loaded.move_to_end(key)
            return self._loaded[key]
        if known is None:
            with self._engine.connect() as conn:
                known = registry.get_version(conn, name, version)
        path = cached_artifact(self._settings.model_cache_dir, known, self._s3)
        model = open_model(
            name, version, path, self._settings.providers, self._settings.intra_op_threads
        )
        self._loaded[key] = model
        while len(self._loaded) > self._settings.model_cache_versions:
            evicted, _ = self._loaded.popitem(last=False)
            log.info("unloaded %s v%d (cache full)", *evicted)
        return model

    def loaded(self) -> list[LoadedModel]:
        """Every model held now."""
        return list(self._loaded.values())
