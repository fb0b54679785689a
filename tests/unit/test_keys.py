"""inferfleet.tenants.keys.KeyLookup: found keys are remembered until a change is announced
or they age out; unknown keys are remembered briefly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast

from inferfleet.tenants.keys import KeyLookup, KeyRecord, hash_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeDb:
    """Answers the key look-up from `rows` (by key hash) and counts the look-ups.

    `during` runs inside each look-up, before it answers (a change landing meanwhile).
    """

    def __init__(self) -> None:
        self.rows: dict[str, Any] = {}
        self.look_ups = 0
        self.during: Callable[[], None] = lambda: None

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[Any]:
        yield self

    async def execute(self, statement: Any) -> Any:
        self.look_ups += 1
        wanted = statement.compile().params["key_hash_1"]
        row = self.rows.get(wanted)
        self.during()
        return SimpleNamespace(one_or_none=lambda: row)

    def add(self, key: str) -> None:
        self.rows[hash_key(key)] = SimpleNamespace(
            id="key_1", tenant="t", scope="jobs", created_at=datetime.now(UTC), revoked_at=None
        )

    def revoke(self, key: str) -> None:
        del self.rows[hash_key(key)]


def lookup(
    db: FakeDb, clock: Clock, ttl_s: float = 5.0, size: int = 3, max_age_s: float = 5.0
) -> KeyLookup:
    return KeyLookup(cast(Any, db), max_age_s, ttl_s, size, clock=clock)


def ask(keys: KeyLookup, key: str) -> KeyRecord | None:
    return asyncio.run(keys(key))


def test_an_unknown_key_is_looked_up_once_within_the_ttl_and_again_after() -> None:
    db, clock = FakeDb(), Clock()
    keys = lookup(db, clock)

    within = [ask(keys, "ifk_unknown") for _ in range(5)]
    clock.now += 5.0
    after = ask(keys, "ifk_unknown")

    assert within == [None] * 5
    assert after is None
    assert db.look_ups == 2


def test_a_found_key_is_looked_up_every_time_without_caching() -> None:
    db, clock = FakeDb(), Clock()
    db.add("ifk_good")
    keys = lookup(db, clock, max_age_s=0)

    found = [ask(keys, "ifk_good") for _ in range(3)]

    assert all(isinstance(record, KeyRecord) for record in found)
    assert db.look_ups == 3


def test_a_found_key_is_answered_from_memory_until_max_age() -> None:
    db, clock = FakeDb(), Clock()
    db.add("ifk_good")
    keys = lookup(db, clock, max_age_s=5.0)

    found = [ask(keys, "ifk_good") for _ in range(3)]
    db.revoke("ifk_good")
    clock.now += 4.9
    still = ask(keys, "ifk_good")
    clock.now += 0.1
    aged = ask(keys, "ifk_good")

    assert all(isinstance(record, KeyRecord) for record in found)
    assert isinstance(still, KeyRecord)
    assert aged is None
    assert db.look_ups == 2


def test_clear_forgets_found_keys_at_once() -> None:
    db, clock = FakeDb(), Clock()
    db.add("ifk_good")
    keys = lookup(db, clock)
    ask(keys, "ifk_good")

    db.revoke("ifk_good")
    keys.clear()

    assert ask(keys, "ifk_good") is None


def test_a_change_announced_during_a_look_up_is_not_hidden_by_its_answer() -> None:
    db, clock = FakeDb(), Clock()
    db.add("ifk_good")
    keys = lookup(db, clock)
    # The row was read before the revocation; the announcement lands before the answer.
    db.during = lambda: keys.clear()
    first = ask(keys, "ifk_good")
    db.during = lambda: None
    db.revoke("ifk_good")

    assert isinstance(first, KeyRecord)
    assert ask(keys, "ifk_good") is None


def test_at_most_size_unknown_keys_are_remembered_oldest_forgotten_first() -> None:
    db, clock = FakeDb(), Clock()
    keys = lookup(db, clock, size=3)

    for key in ("k1", "k2", "k3", "k4"):
        ask(keys, key)
    db.look_ups = 0
    for key in ("k2", "k3", "k4"):
        ask(keys, key)
    remembered = db.look_ups
    ask(keys, "k1")

    assert remembered == 0
    assert db.look_ups == 1


def test_a_ttl_of_0_remembers_nothing() -> None:
    db, clock = FakeDb(), Clock()
    keys = lookup(db, clock, ttl_s=0)

    for _ in range(2):
        ask(keys, "ifk_unknown")

    assert db.look_ups == 2
