"""The database engine, built from settings in a service's wiring, never at import."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine

from inferfleet.settings import Settings


def make_engine(settings: Settings, pool_size: int = 10) -> Engine:
    """A pooled engine for `settings.database_url`; connections are checked before use."""
    return create_engine(
        settings.database_url.get_secret_value(),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
    )
