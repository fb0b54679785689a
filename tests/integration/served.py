"""An API the test builds, serves and reaches into: its loop, its services, its statements."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from fastapi import FastAPI
from sqlalchemy import event

from api.app import create_app
from api.plumbing.deps import Services
from inferfleet.settings import Settings
from tests.integration.conftest import serve_built

T = TypeVar("T")


@contextmanager
def served(settings: Settings, **overrides: Any) -> Iterator[tuple[FastAPI, str]]:
    """`create_app(settings with overrides)` on real HTTP; yields the app and its URL."""
    app = create_app(settings.model_copy(update=overrides))
    served = serve_built(app)
    url = next(served)
    try:
        yield app, url
    finally:
        next(served, None)


def services(app: FastAPI) -> Services:
    found: Services = app.state.services
    return found


def on_loop(app: FastAPI, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
    """Run `coro` on the served app's event loop (from the test's thread)."""
    loop = app.state.listener_task.get_loop()
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)


def stop_listening(app: FastAPI) -> None:
    """Cancel the app's notification listener (its caches then age out only)."""
    task: asyncio.Task[None] = app.state.listener_task
    task.get_loop().call_soon_threadsafe(task.cancel)


class Statements:
    """Every statement the app sends Postgres through its engines (the asyncio one of the
    hot routes and the blocking one), recorded as the driver receives it."""

    def __init__(self, app: FastAPI) -> None:
        self.sent: list[str] = []
        found = services(app)
        for engine in (found.db.sync_engine, found.engine):
            event.listen(engine, "before_cursor_execute", self._record)

    def _record(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.sent.append(statement)

    def reading(self, table: str) -> list[str]:
        """The statements so far that read `table`."""
        pattern = re.compile(rf"\bFROM {table}\b")
        return [s for s in self.sent if pattern.search(s)]

    def clear(self) -> None:
        self.sent.clear()
