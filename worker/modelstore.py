"""The models a worker holds: fetched from S3 into a local cache, opened, kept loaded
within a hard bound.

The cache is content-addressed (`<sha256>.<suffix>`), so a restart reuses what it
already verified and versions with the same bytes share files.

At most `model_cache_versions` versions are loaded or loading at once. The versions
aliases point at (`pin`) are never unloaded, and load even when that means unloading
the least recently used other version. Any other version loads in the background, one
at a time, when a job names it (`state`) and there is room: a free slot, or a version
no job has used for `model_idle_s`, which is unloaded for it. A version is never
unloaded while it is busy, so each one serves the jobs waiting for it before it can be
pushed out. A version that cannot be loaded (not in the registry, a bad artifact) is
remembered as failed for `FAILED_FOR_S`, and its jobs fail naming it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Engine

from inferfleet.clients.objectstore import download_verified, sha256_file
from inferfleet.clients.outages import OUTAGES
from inferfleet.errors import ConfigError
from inferfleet.models import registry
from inferfleet.models.publish import cache_path
from inferfleet.models.registry import ModelVersion
from inferfleet.settings import Settings
from worker.runtime import LoadedModel, open_model

log = logging.getLogger(__name__)

Key = tuple[str, int]
State = Literal["loaded", "loading", "waiting", "failed"]
# How long a version that failed to load is not tried again (its jobs fail meanwhile).
FAILED_FOR_S = 60.0


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


def check_bound(settings: Settings) -> None:
    """ConfigError unless the bound leaves room beside the served models' alias targets
    for the other versions jobs name (else those jobs would wait for ever)."""
    served = len(settings.worker_models)
    if settings.model_cache_versions <= served:
        raise ConfigError(
            f"INFERFLEET_MODEL_CACHE_VERSIONS is {settings.model_cache_versions}; a worker "
            f"serving {served} model(s) needs at least {served + 1}: one per alias target "
            "and one for the other versions jobs name"
        )


def to_unload(
    last_used: Mapping[Key, float],
    pinned: set[Key],
    busy: int,
    bound: int,
    now: float,
    idle_s: float,
    *,
    force: bool,
) -> tuple[bool, Key | None]:
    """Whether one more version may load now, and which loaded version to unload for it.

    `last_used` holds the loaded versions (least recently used first) with when a job
    last used them; `busy` counts them plus the loads under way. Under `bound` a
    version loads without unloading any. At the bound, the least recently used unpinned
    version is unloaded: when `force`d (an alias target, a load asked for by name)
    whatever its use, otherwise only once no job has used it for `idle_s`; else the
    version waits. A forced load with nothing to unload (every loaded version pinned)
    goes beyond the bound.
    """
    if busy < bound:
        return True, None
    for key, used in last_used.items():
        if key not in pinned and (force or now - used >= idle_s):
            return True, key
    return force, None


class ModelStore:
    """Loaded models by (name, version), within `settings.model_cache_versions`
    (module docstring). Thread-safe."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        s3: Any,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._engine = engine
        self._s3 = s3
        self._clock = clock
        self._lock = threading.Lock()
        self._loaded: OrderedDict[Key, LoadedModel] = OrderedDict()
        self._used: dict[Key, float] = {}
        self._loading: dict[Key, Future[LoadedModel]] = {}
        self._failed: dict[Key, tuple[float, BaseException]] = {}
        self._pinned: set[Key] = set()
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-loader")
        # Bumped at every load and unload, so a reader knows when to report again.
        self.changes = 0

    def resolve(self, name: str, alias: str = registry.DEFAULT_ALIAS) -> ModelVersion:
        """The version `alias` of `name` points at now."""
        with self._engine.connect() as conn:
            return registry.resolve(conn, name, alias)

    def get(self, name: str, version: int) -> LoadedModel:
        """The loaded model, loading it first if needed (or waiting for a load under way);
        raises the load's error, or the remembered one of a version that failed lately."""
        return self._future(name, version, wanted=True).result()

    def prefetch(self, name: str, version: int) -> Future[LoadedModel]:
        """Start loading a version in the background; returns the load's future."""
        return self._future(name, version, wanted=True)

    def state(self, name: str, version: int) -> State:
        """Where `version` stands for a job that names it, without waiting: `loaded`,
        `loading` (in the background), `waiting` (no room yet; asking again later may
        start its load) or `failed` (`get` raises why). Asking marks it used."""
        key = (name, version)
        with self._lock:
            if key in self._loaded:
                self._used[key] = self._clock()
                self._loaded.move_to_end(key)
                return "loaded"
        future = self._future(name, version, wanted=False)
        if not future.done():
            return "loading" if key in self._loading else "waiting"
        return "failed" if future.exception() is not None else "loaded"

    def pin(self, keys: Iterable[Key]) -> None:
        """Keep these versions loaded whatever else is asked for (the aliases' targets)."""
        with self._lock:
            self._pinned = set(keys)

    def loaded(self) -> list[LoadedModel]:
        """Every model held now, least recently used first."""
        with self._lock:
            return list(self._loaded.values())

    def close(self) -> None:
        """Stop the background loader (a load under way finishes first)."""
        self._loader.shutdown(wait=True, cancel_futures=True)

    def _future(self, name: str, version: int, *, wanted: bool) -> Future[LoadedModel]:
        """The load of `version`: done if loaded or failed lately, else under way.

        Without `wanted` (a job's request), a version for which there is no room gets a
        future that is not running, and nothing starts.
        """
        key = (name, version)
        with self._lock:
            now = self._clock()
            if key in self._loaded:
                self._used[key] = now
                self._loaded.move_to_end(key)
                return _done(self._loaded[key])
            failed = self._failed.get(key)
            if failed is not None and now - failed[0] < FAILED_FOR_S:
                return _done(error=failed[1])
            if key in self._loading:
                return self._loading[key]
            may, unload = to_unload(
                self._used_order(),
                self._pinned,
                len(self._loaded) + len(self._loading),
                self._settings.model_cache_versions,
                now,
                self._settings.model_idle_s,
                force=wanted or key in self._pinned,
            )
            if not may:
                return Future()
            if unload is not None:
                self._unload(unload, "to load " + f"{name} v{version}")
            self._loading[key] = self._loader.submit(self._load, key)
            return self._loading[key]

    def _used_order(self) -> dict[Key, float]:
        return {key: self._used.get(key, 0.0) for key in self._loaded}

    def _load(self, key: Key) -> LoadedModel:
        name, number = key
        try:
            with self._engine.connect() as conn:
                version = registry.get_version(conn, name, number)
            files = cached_files(self._settings.model_cache_dir, version, self._s3)
            model = open_model(version, files, self._settings)
        except BaseException as e:
            with self._lock:
                self._loading.pop(key, None)
                if not isinstance(e, OUTAGES):  # an outage is tried again at the next ask
                    self._failed[key] = (self._clock(), e)
            log.error("cannot load %s v%d: %r", name, number, e)
            raise
        with self._lock:
            self._loaded[key] = model
            self._used[key] = self._clock()
            self._loading.pop(key, None)
            self._failed.pop(key, None)
            self.changes += 1
        return model

    def _unload(self, key: Key, why: str) -> None:
        del self._loaded[key]
        self._used.pop(key, None)
        self.changes += 1
        log.info("unloaded %s v%d %s", *key, why)


def _done(model: LoadedModel | None = None, error: BaseException | None = None) -> Future[Any]:
    future: Future[Any] = Future()
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(model)
    return future
