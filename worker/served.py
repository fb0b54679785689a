"""The versions a worker serves: its models' alias targets, loaded before it joins the
group, moved aliases noticed and their new versions loaded in the background, and what
`/readyz` and the `inferfleet_worker_model_loaded` metric say of them."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future

from inferfleet.errors import InferfleetError
from inferfleet.models.registry import DEFAULT_ALIAS
from inferfleet.settings import Settings
from worker.health import Readiness, report_models
from worker.isolation import TRANSIENT
from worker.metrics import WorkerMetrics
from worker.modelstore import ModelStore
from worker.runtime import LoadedModel

log = logging.getLogger(__name__)

REGISTRY_FAILURES: tuple[type[Exception], ...] = (*TRANSIENT, InferfleetError)


class ServedModels:
    """The served models of one worker. `away` says why the worker waits for a service
    (None while it does not): it is not ready meanwhile, whatever its models."""

    def __init__(
        self,
        settings: Settings,
        store: ModelStore,
        metrics: WorkerMetrics,
        readiness: Readiness,
        away: Callable[[], str | None],
    ) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.readiness = readiness
        self._away = away
        self._aliases: dict[str, int] = {}
        self._next_alias_check = 0.0
        self._reported = -1  # the store's `changes` when /readyz was last told

    def load(self) -> None:
        """Load and warm every alias target (raises what keeps one from loading)."""
        self._aliases = self._alias_targets()
        self.store.pin(self._aliases.items())
        for name, version in self._aliases.items():
            self.store.get(name, version)

    def ready(self) -> None:
        """Tell /readyz the worker serves; the next alias check is one interval away."""
        self.report(None)
        self._next_alias_check = time.monotonic() + self.settings.registry_poll_s

    def _alias_targets(self) -> dict[str, int]:
        return {name: self.store.resolve(name).version for name in self.settings.worker_models}

    def watch(self) -> None:
        """Every `registry_poll_s`, notice moved aliases and load their new versions.

        The new version loads in the background beside the old one, which keeps serving
        the jobs that were pinned to it at submit, as any other version does: loaded
        while there is room, unloaded once idle when another is wanted (`worker.modelstore`).
        """
        if self.store.changes != self._reported:
            self.report(None)
        now = time.monotonic()
        if now < self._next_alias_check:
            return
        self._next_alias_check = now + self.settings.registry_poll_s
        try:
            targets = self._alias_targets()
        except REGISTRY_FAILURES as e:
            log.warning("cannot read the registry, keeping the loaded versions: %s", e)
            return
        self.store.pin(targets.items())
        for name, version in targets.items():
            if self._aliases.get(name) != version:
                log.info(
                    "model=%s alias %s moved from v%s to v%d; loading it",
                    name,
                    DEFAULT_ALIAS,
                    self._aliases.get(name),
                    version,
                )
                self.store.prefetch(name, version).add_done_callback(self._loaded)
        self._aliases = targets

    def _loaded(self, future: Future[LoadedModel]) -> None:
        error = future.exception()
        if error is not None:
            log.error("loading a new version failed; the old one keeps serving: %s", error)
        self.report(None)

    def report(self, not_ready: str | None) -> None:
        """Publish the loaded models on /readyz and as metrics; ready unless `not_ready`
        or the worker waits for a service to come back."""
        not_ready = not_ready or self._away()
        self._reported = self.store.changes
        models = report_models(self.store.loaded(), self.metrics.model_loaded)
        self.readiness.set(not_ready is None, not_ready, models)
