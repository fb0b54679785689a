"""A small in-process cache whose entries age out and can all be dropped at once.

`ChangeCache` backs the API's look-ups that Postgres announces changes of (keys,
aliases): `clear()` when a change is announced, and `max_age_s` bounds how stale an entry
can be when announcements do not arrive. A value read from the database before a
`clear()` is never stored after it (`token()` before the read, `put(..., token)` after),
so a change that lands during a look-up cannot be hidden by that look-up's answer.

Safe from any thread; its operations hold a lock for a few dictionary operations and
never wait on I/O, so an event loop may call them.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ChangeCache(Generic[K, V]):
    """At most `size` entries, each answered for `max_age_s` after it was stored (0 = none)."""

    def __init__(
        self, max_age_s: float, size: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._max_age_s = max_age_s
        self._size = size
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()  # key -> (expires, value)
        self._generation = 0
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        """The live value for `key`, or None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if self._clock() >= entry[0]:
                del self._entries[key]
                return None
            return entry[1]

    def token(self) -> int:
        """Take before reading what `put` will store."""
        with self._lock:
            return self._generation

    def put(self, key: K, value: V, token: int) -> None:
        """Store `value` unless the cache was cleared since `token` was taken; the oldest
        entries go first past `size`."""
        if self._max_age_s <= 0:
            return
        with self._lock:
            if token != self._generation:
                return
            self._entries.pop(key, None)
            self._entries[key] = (self._clock() + self._max_age_s, value)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget every entry, and refuse the `put`s of reads that began before."""
        with self._lock:
            self._entries.clear()
            self._generation += 1

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
