"""worker.modelstore: a hard bound on loaded versions that never unloads an alias target,
loads in the background, and remembers versions that cannot load (no services)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import SimpleNamespace
from typing import Any

import pytest

import worker.modelstore
from inferfleet.errors import ArtifactError, ConfigError, NotFoundError
from inferfleet.settings import load_settings
from worker.modelstore import ModelStore, check_bound, to_unload

A1, A2, A3, B1 = ("a", 1), ("a", 2), ("a", 3), ("b", 1)


@pytest.mark.parametrize(
    ("last_used", "pinned", "busy", "force", "expected"),
    [
        ({A1: 0.0}, {A1}, 1, False, (True, None)),  # room below the bound
        ({A1: 0.0, A2: 95.0}, {A1}, 2, False, (False, None)),  # A2 used 5 s ago: wait
        ({A1: 0.0, A2: 80.0}, {A1}, 2, False, (True, A2)),  # A2 idle 20 s: unload it
        ({A2: 50.0, A3: 60.0}, set(), 2, False, (True, A2)),  # least recently used first
        ({A1: 0.0, B1: 0.0}, {A1, B1}, 2, False, (False, None)),  # aliases never unloaded
        ({A1: 0.0, A2: 99.0}, {A1}, 2, True, (True, A2)),  # an alias target makes room
        ({A1: 0.0, B1: 0.0}, {A1, B1}, 2, True, (True, None)),  # ... or goes beyond
        ({A1: 0.0, A2: 90.0}, {A1}, 3, False, (True, A2)),  # busy counts loads under way
    ],
)
def test_to_unload(
    last_used: dict[Any, float],
    pinned: set[Any],
    busy: int,
    force: bool,
    expected: tuple[bool, Any],
) -> None:
    got = to_unload(last_used, pinned, busy, bound=2, now=100.0, idle_s=10.0, force=force)
    assert got == expected


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> ModelStore:
    """A store of bound 2 whose loads are fakes: version 9 is not in the registry,
    version 8's artifact is broken."""

    def get_version(conn: Any, name: str, number: int) -> Any:
        if number == 9:
            raise NotFoundError(f"{name} has no version {number}")
        return SimpleNamespace(name=name, version=number)

    def open_model(version: Any, files: Any, settings: Any) -> Any:
        if version.version == 8:
            raise ArtifactError(f"{version.name} v8 fails its warm-up")
        return SimpleNamespace(name=version.name, version=version.version)

    monkeypatch.setattr(worker.modelstore.registry, "get_version", get_version)
    monkeypatch.setattr(worker.modelstore, "cached_files", lambda *a: {})
    monkeypatch.setattr(worker.modelstore, "open_model", open_model)
    settings = load_settings(model_cache_versions=2, model_idle_s=10.0)
    return ModelStore(settings, FakeEngine(), None, clock=Clock())  # type: ignore[arg-type]


class FakeEngine:
    @contextmanager
    def connect(self) -> Iterator[None]:
        yield None


def loaded(store: ModelStore) -> set[tuple[str, int]]:
    return {(m.name, m.version) for m in store.loaded()}


def settle(store: ModelStore, name: str, version: int) -> str:
    """Ask for a version until its load (if one started) has ended; its state then."""
    state = store.state(name, version)
    if state == "loading":
        with suppress(Exception):  # the state says how it ended
            store._loading[(name, version)].result()
        state = store.state(name, version)
    return state


def test_versions_load_in_the_background_within_the_bound_and_never_evict_an_alias(
    store: ModelStore,
) -> None:
    clock: Any = store._clock
    store.pin([A1])
    store.get("a", 1)
    assert settle(store, "a", 2) == "loaded"
    assert loaded(store) == {A1, A2}

    # Full: version 3 waits while version 2 was used lately, and loads once it is idle.
    assert store.state("a", 3) == "waiting"
    clock.now += 5
    assert store.state("a", 3) == "waiting"
    clock.now += 10
    assert settle(store, "a", 3) == "loaded"
    assert loaded(store) == {A1, A3}, "the idle version made room; the alias target stayed"

    # An alias that moves to a fourth version loads at once, unloading the other one.
    store.pin([A1, B1])
    store.get("b", 1)
    assert loaded(store) == {A1, B1}
    clock.now += 60
    assert store.state("a", 2) == "waiting", "both loaded versions are alias targets"
    assert len(store.loaded()) == 2


@pytest.mark.parametrize(("version", "error"), [(9, NotFoundError), (8, ArtifactError)])
def test_a_version_that_cannot_load_fails_until_it_is_tried_again(
    store: ModelStore, version: int, error: type[Exception]
) -> None:
    clock: Any = store._clock
    assert settle(store, "a", version) == "failed"
    with pytest.raises(error, match=f"a.*{version}"):
        store.get("a", version)
    assert loaded(store) == set()
    clock.now += worker.modelstore.FAILED_FOR_S
    assert store.state("a", version) == "loading", "tried again after a while"
    assert settle(store, "a", version) == "failed"


@pytest.mark.parametrize(("models", "bound", "ok"), [(1, 2, True), (1, 1, False), (3, 3, False)])
def test_the_bound_leaves_room_beside_the_alias_targets(models: int, bound: int, ok: bool) -> None:
    settings = load_settings(
        worker_models=[f"m{i}" for i in range(models)], model_cache_versions=bound
    )
    if ok:
        check_bound(settings)
    else:
        with pytest.raises(ConfigError, match="INFERFLEET_MODEL_CACHE_VERSIONS"):
            check_bound(settings)
