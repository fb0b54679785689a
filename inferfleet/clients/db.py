"""Database engines, built from settings in a service's wiring, never at import.

`make_engine` is the blocking engine the worker, the scheduler and the command line
use; `make_async_engine` is the API's, whose requests wait on Postgres without parking
a thread. Both speak psycopg 3 to the same URL with the same session options.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from inferfleet.settings import Settings

# Statements are planned for their actual parameters every time. psycopg prepares a
# statement on its fifth run and Postgres then may switch to a generic plan; for
# `id = ANY(:ids) AND status IN (...)` that plan walks every queued row per batch and
# made the worker's claim ten times slower once a backlog built up.
CONNECT_ARGS: dict[str, Any] = {"options": "-c plan_cache_mode=force_custom_plan"}


def make_engine(settings: Settings, pool_size: int = 10, pre_ping: bool = True) -> Engine:
    """A pooled engine for `settings.database_url`.

    With `pre_ping` each connection is checked (a round trip) as it leaves the pool, so
    one that died with a restarted server is replaced unseen. Without, the statement
    that meets a dead connection fails as an outage would, and the engine drops every
    pooled connection with it: for a caller that handles outages anyway (the worker)
    and whose every round trip counts.
    """
    return create_engine(
        settings.database_url.get_secret_value(),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=pre_ping,
        connect_args=CONNECT_ARGS,
    )


def make_async_engine(settings: Settings, pool_size: int = 10) -> AsyncEngine:
    """An asyncio engine (psycopg's async connections) for `settings.database_url`.

    No pre-ping: a connection that died is dropped when its statement fails, and the
    caller's outage handling answers that request; pinging every checkout would double
    the round trips of the API's one-statement requests.
    """
    return create_async_engine(
        settings.database_url.get_secret_value(),
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=10,
        connect_args=CONNECT_ARGS,
    )


def autocommit(db: AsyncEngine) -> AsyncEngine:
    """`db` for statements that stand alone (reads): each runs in its own implicit
    transaction, so one costs one round trip, where a pooled connection of `db` sends
    `BEGIN` before it and `ROLLBACK` when it goes back to the pool. Same pool."""
    return db.execution_options(isolation_level="AUTOCOMMIT")
