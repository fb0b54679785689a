"""A database of a test's own on the test server, migrated to a revision, dropped after.

For tests that need tables no other test writes to: a migration run from an old
revision, retention that drops whole day partitions, planner statistics of known rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from alembic.config import Config
from sqlalchemy import Engine, create_engine, make_url, text

from alembic import command
from tests.integration.conftest import ROOT, TEST_DATABASE_URL


def migrate(url: str, revision: str, down: bool = False) -> None:
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["database_url"] = url
    (command.downgrade if down else command.upgrade)(config, revision)


@contextmanager
def scratch_database(revision: str = "head") -> Iterator[tuple[Engine, str]]:
    """A new database at `revision`: (engine, url); dropped when the block ends."""
    base = make_url(TEST_DATABASE_URL)
    name = f"{base.database}_scratch_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = base.set(database=name).render_as_string(hide_password=False)
    engine = create_engine(url)
    try:
        migrate(url, revision)
        yield engine, url
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
