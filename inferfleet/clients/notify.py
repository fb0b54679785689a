"""Postgres `LISTEN/NOTIFY`: the channels, the triggers that send on them, and a listener.

Every change a process caches or waits on is announced by a trigger in the database
(installed by the migration that imports `TRIGGERS_SQL`), so a change made by any
process (the CLI, another API process, a worker, the scheduler, `psql`) reaches every
listener, and no code path can forget to send:

- `KEYS`: a statement changed `api_keys` (a key made, revoked, deleted).
- `MODELS`: a statement changed `model_versions` or `model_aliases` (a version
  registered or removed, an alias set, moved or deleted).
- `JOBS_ENDED`: a statement left at least one job in a terminal status (the worker's
  results and dead letters, a cancel, an expiry, a batch cancel, a failed produce...).

Payloads are always empty. Postgres delivers identical notifications of one
transaction once, so each channel gets at most ONE notification per transaction,
however many statements and rows it wrote; the listener then asks what it needs in one
query (for `JOBS_ENDED`: which of the ids it waits on are now terminal). A payload of
ids would not fit Postgres's 8000 bytes for the worker's batches anyway.

`Listener` holds one connection (psycopg 3, autocommit) that listens on the channels,
calls the handler of each notification, and reconnects with a backoff when the
connection fails (a Postgres restart); after each (re)connect it calls `on_connect`, since
notifications sent while it was away are lost: caches are cleared and waiters checked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from inferfleet.tables import TERMINAL_STATUSES

log = logging.getLogger(__name__)

# A listener whose Postgres accepts the connection and never answers tries again after this.
CONNECT_TIMEOUT_S = 10

KEYS = "inferfleet_keys"
MODELS = "inferfleet_models"
JOBS_ENDED = "inferfleet_jobs_ended"

_TERMINAL = ", ".join(f"'{status}'" for status in TERMINAL_STATUSES)

# Installed by migration 0008; a change here needs a migration that installs it again.
# One statement-level trigger per table and event: a few microseconds per statement, not
# per row. The jobs trigger reads the statement's new rows (a transition table) so that
# the worker's claims (`running`) and the submit path's `produced_at` updates send nothing.
TRIGGERS_SQL = f"""
CREATE OR REPLACE FUNCTION inferfleet_notify_keys() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('{KEYS}', '');
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION inferfleet_notify_models() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('{MODELS}', '');
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION inferfleet_notify_jobs_ended() RETURNS trigger AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM changed WHERE status IN ({_TERMINAL})) THEN
        PERFORM pg_notify('{JOBS_ENDED}', '');
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER inferfleet_notify_keys
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION inferfleet_notify_keys();
CREATE TRIGGER inferfleet_notify_versions
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON model_versions
    FOR EACH STATEMENT EXECUTE FUNCTION inferfleet_notify_models();
CREATE TRIGGER inferfleet_notify_aliases
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON model_aliases
    FOR EACH STATEMENT EXECUTE FUNCTION inferfleet_notify_models();
CREATE TRIGGER inferfleet_notify_jobs_ended_update
    AFTER UPDATE ON jobs REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION inferfleet_notify_jobs_ended();
CREATE TRIGGER inferfleet_notify_jobs_ended_insert
    AFTER INSERT ON jobs REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION inferfleet_notify_jobs_ended();
"""

DROP_TRIGGERS_SQL = """
DROP TRIGGER IF EXISTS inferfleet_notify_jobs_ended_insert ON jobs;
DROP TRIGGER IF EXISTS inferfleet_notify_jobs_ended_update ON jobs;
DROP TRIGGER IF EXISTS inferfleet_notify_aliases ON model_aliases;
DROP TRIGGER IF EXISTS inferfleet_notify_versions ON model_versions;
DROP TRIGGER IF EXISTS inferfleet_notify_keys ON api_keys;
DROP FUNCTION IF EXISTS inferfleet_notify_jobs_ended();
DROP FUNCTION IF EXISTS inferfleet_notify_models();
DROP FUNCTION IF EXISTS inferfleet_notify_keys();
"""

# What a notification on a channel calls (on the listener's event loop; keep it short).
Handler = Callable[[], None]


def libpq_url(database_url: str) -> str:
    """The SQLAlchemy URL `postgresql+psycopg://…` as psycopg's own connection string."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(False)


class Listener:
    """One listening connection per process; see the module docstring.

    `handlers` maps channels to what a notification on them calls; `on_connect` runs after
    every successful (re)connect, before any notification is handled. Handlers run on
    the listener's event loop: they must not block (schedule work, clear a dict).
    """

    def __init__(
        self,
        database_url: str,
        handlers: Mapping[str, Handler],
        on_connect: Handler = lambda: None,
        *,
        retry_min_s: float = 0.2,
        retry_max_s: float = 5.0,
        application_name: str = "inferfleet notifications",
    ) -> None:
        self._url = libpq_url(database_url)
        self._handlers = dict(handlers)
        self._on_connect = on_connect
        self._retry_min_s = retry_min_s
        self._retry_max_s = retry_max_s
        self._application_name = application_name
        self._connected = asyncio.Event()
        self.connects = 0

    @property
    def connected(self) -> bool:
        """Whether the listening connection is up (notifications are being received)."""
        return self._connected.is_set()

    async def wait_connected(self) -> None:
        """Return once the listening connection is up."""
        await self._connected.wait()

    async def run(self) -> None:
        """Listen for ever, reconnecting after failures (cancel the task to stop)."""
        pause = self._retry_min_s
        while True:
            before = self.connects
            try:
                await self._listen()
            except (psycopg.Error, OSError) as e:
                log.warning(
                    "the notification listener lost Postgres (%s: %s); reconnecting",
                    type(e).__name__,
                    e,
                )
            finally:
                self._connected.clear()
            if self.connects > before:
                pause = self._retry_min_s
            await asyncio.sleep(pause)
            pause = min(pause * 2, self._retry_max_s)

    async def _listen(self) -> None:
        conn = await psycopg.AsyncConnection.connect(
            self._url,
            autocommit=True,
            application_name=self._application_name,
            connect_timeout=CONNECT_TIMEOUT_S,
            keepalives_idle=10,
            keepalives_interval=5,
        )
        async with conn:
            for channel in self._handlers:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            self.connects += 1
            self._connected.set()
            self._call(self._on_connect, "on_connect")
            async for notice in conn.notifies():
                handler = self._handlers.get(notice.channel)
                if handler is not None:
                    self._call(handler, notice.channel)

    @staticmethod
    def _call(handler: Handler, what: str) -> None:
        try:
            handler()
        except Exception:
            # A handler's bug must not stop the notifications of the others.
            log.exception("the notification handler of %s failed", what)
