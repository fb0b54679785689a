"""The database engine, built from settings in a service's wiring, never at import."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine

from inferfleet.settings import Settings


def make_engine(settings: Settings, pool_size: int = 10) -> Engine:
    """A pooled engine for `settings.database_url`; connections are checked before use.

    Statements are planned for their actual parameters every time. psycopg prepares a
    statement on its fifth run and Postgres then may switch to a generic plan; for
    `id = ANY(:ids) AND status IN (...)` that plan walks every queued row per batch
    and made the worker's claim ten times slower once a backlog built up.
    """
    return create_engine(
        settings.database_url.get_secret_value(),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        connect_args={"options": "-c plan_cache_mode=force_custom_plan"},
    )
