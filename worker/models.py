"""The models a worker holds: fetched from S3 into a local cache, opened, kept in an LRU.

The cache is content-addressed (`<sha256>.<suffix>`), so a restart reuses what it
already verified and versions with the same bytes share files. Loads can run in the
background (`prefetch`): a worker that learns an alias moved loads the new version
beside the old one while it keeps serving, and a job naming a version that is still
loading waits for that load instead of starting a second one.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from inferfleet import registry
from inferfleet.objectstore import download_verified, sha256_file
from inferfleet.publish import cache_path
from inferfleet.registry import ModelVersion
from inferfleet.settings import Settings
from worker.runtime import LoadedModel, open_model

log = logging.getLogger(__name__)

Key = tuple[str, int]


def cached_files(cache_dir: Path, version: ModelVersion, s3: Any) -> dict[str, Path]:
    """Local paths of every file of `version`, downloading and verifying what is missing."""
    paths = {}
    for filename, ref in version.files.items():
        path = cache_path(cache_dir, ref.sha256, filename)
        if not (path.exists() and sha256_file(path) == ref.sha256):
            log.info(
                "downloading %s v%d %s from %s", version.name, version.version, filename, ref.uri
            )
            download_verified(s3, ref.uri, path, ref.sha256)
        paths[filename] = path
    return paths


class ModelStore:
    """Loaded models by (name, version), at most `settings.model_cache_versions`.

    Versions that an alias points at (`pin`) are never evicted. Thread-safe.
    """

    def __init__(self, settings: Settings, engine: Engine, s3: Any) -> None:
        self._settings = settings
        self._engine = engine
        self._s3 = s3
        self._lock = threading.Lock()
        self._loaded: OrderedDict[Key, LoadedModel] = OrderedDict()
        self._loading: dict[Key, Future[LoadedModel]] = {}
        self._pinned: set[Key] = set()
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-loader")

    def resolve(self, name: str, alias: str = registry.DEFAULT_ALIAS) -> ModelVersion:
        """The version `alias` of `name` points at now."""
        with self._engine.connect() as conn:
            return registry.resolve(conn, name, alias)

    def get(self, name: str, version: int) -> LoadedModel:
        """The loaded model, loading it first if needed (or waiting for a load under way)."""
        return self._future(name, version).result()

    def prefetch(self, name: str, version: int) -> Future[LoadedModel]:
        """Start loading a version in the background; returns the load's future."""
        return self._future(name, version)

    def pin(self, keys: Iterable[Key]) -> None:
        """Keep these versions loaded whatever the LRU says (the aliases' targets)."""
        with self._lock:
            self._pinned = set(keys)

    def loaded(self) -> list[LoadedModel]:
        """Every model held now, least recently used first."""
        with self._lock:
            return list(self._loaded.values())

    def close(self) -> None:
        """Stop the background loader (a load under way finishes first)."""
        self._loader.shutdown(wait=True, cancel_futures=True)

    def _future(self, name: str, version: int) -> Future[LoadedModel]:
        key = (name, version)
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                done: Future[LoadedModel] = Future()
                done.set_result(self._loaded[key])
                return done
            if key not in self._loading:
                self._loading[key] = self._loader.submit(self._load, key)
            return self._loading[key]

    def _load(self, key: Key) -> LoadedModel:
        name, number = key
        try:
            with self._engine.connect() as conn:
                version = registry.get_version(conn, name, number)
            files = cached_files(self._settings.model_cache_dir, version, self._s3)
            model = open_model(version, files, self._settings)
        except BaseException:
            with self._lock:
                self._loading.pop(key, None)  # the next request tries again
            raise
        with self._lock:
            self._loaded[key] = model
            self._loading.pop(key, None)
            self._evict()
        return model

    def _evict(self) -> None:
        evictable = [k for k in self._loaded if k not in self._pinned]
        while len(self._loaded) > self._settings.model_cache_versions and evictable:
            key = evictable.pop(0)
            del self._loaded[key]
            log.info("unloaded %s v%d (cache full)", *key)
