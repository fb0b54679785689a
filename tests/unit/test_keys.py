"""inferfleet.tenants.keys.KeyLookup: unknown keys are remembered briefly, found keys never."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast

from inferfleet.tenants.keys import KeyLookup, KeyRecord, hash_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeEngine:
    """Answers the key look-up from `rows` (by key hash) and counts the look-ups."""

    def __init__(self) -> None:
        self.rows: dict[str, Any] = {}
        self.look_ups = 0

    @contextmanager
    def connect(self) -> Iterator[Any]:
        yield self

    def execute(self, statement: Any) -> Any:
        self.look_ups += 1
        wanted = statement.compile().params["key_hash_1"]
        return SimpleNamespace(one_or_none=lambda: self.rows.get(wanted))

    def add(self, key: str) -> None:
        self.rows[hash_key(key)] = SimpleNamespace(
            id="key_1", tenant="t", scope="jobs", created_at=datetime.now(UTC), revoked_at=None
        )


def lookup(engine: FakeEngine, clock: Clock, ttl_s: float = 5.0, size: int = 3) -> KeyLookup:
    return KeyLookup(cast(Any, engine), ttl_s, size, clock=clock)


def test_an_unknown_key_is_looked_up_once_within_the_ttl_and_again_after() -> None:
    engine, clock = FakeEngine(), Clock()
    keys = lookup(engine, clock)

    within = [keys("ifk_unknown") for _ in range(5)]
    clock.now += 5.0
    after = keys("ifk_unknown")

    assert within == [None] * 5
    assert after is None
    assert engine.look_ups == 2


def test_a_found_key_is_looked_up_every_time() -> None:
    engine, clock = FakeEngine(), Clock()
    engine.add("ifk_good")
    keys = lookup(engine, clock)

    found = [keys("ifk_good") for _ in range(3)]

    assert all(isinstance(record, KeyRecord) for record in found)
    assert engine.look_ups == 3


def test_at_most_size_unknown_keys_are_remembered_oldest_forgotten_first() -> None:
    engine, clock = FakeEngine(), Clock()
    keys = lookup(engine, clock, size=3)

    for key in ("k1", "k2", "k3", "k4"):
        keys(key)
    engine.look_ups = 0
    for key in ("k2", "k3", "k4"):
        keys(key)
    remembered = engine.look_ups
    keys("k1")

    assert remembered == 0
    assert engine.look_ups == 1


def test_a_ttl_of_0_remembers_nothing() -> None:
    engine, clock = FakeEngine(), Clock()
    keys = lookup(engine, clock, ttl_s=0)

    for _ in range(2):
        keys("ifk_unknown")

    assert engine.look_ups == 2
