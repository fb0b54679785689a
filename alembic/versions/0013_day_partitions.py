"""Jobs, webhook events and attempts range-partitioned by day (`inferfleet.jobs.partitions`).

Each table keeps its rows without copying them, and without a long lock on a live
table of millions of rows:

1. Outside a transaction: a CHECK constraint that every key lies below the bound of the
   day after tomorrow (UTC) is added NOT VALID (a short lock), then VALIDATEd (a scan
   under SHARE UPDATE EXCLUSIVE, which lets reads and writes go on). Writes made while
   it runs have today's keys, below that bound. Rows already past it (none where every
   key is a ULID of the past; a test database's forged IDs) are moved aside first and
   inserted back through the new partitions at the end. `webhook_attempts` gets a unique
   index on (`id`, `event_id`), built CONCURRENTLY, for its new primary key; `jobs`
   trades its unused (`tenant`, `created_at`) index for (`tenant`, `id`), the order a
   tenant's jobs are listed in, built CONCURRENTLY too.
2. In one short transaction: the old table and its indexes are renamed
   `<table>_legacy…`; the partitioned table is made under the old name with the same
   columns, checks and indexes; the old table is ATTACHed as the partition of every key
   below that bound (the validated CHECK proves it, so Postgres skips the scan, and the
   old indexes are attached as the partitions of the new ones, not rebuilt); a default
   partition and the day partitions of `DAYS_AHEAD` days from that bound are made.
   The old tables' triggers (the announcement of ended jobs) move to the partitioned
   tables; the foreign key from attempts to events goes (`inferfleet.jobs.partitions`
   says why).

Until the scheduler's retention drops it (once every row in it is past the retention)
the legacy partition holds what was there before. Downgrade copies the rows back into
plain tables (a development aid: it rewrites every row).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta

from alembic import op
from sqlalchemy import Connection, text
from ulid import ULID

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, partition key, key prefix, primary key after this revision)
# Attempts first: until its foreign key goes, an attempt's event must stay in place.
TABLES = (
    ("webhook_attempts", "event_id", "msg_", "id, event_id"),
    ("webhook_events", "id", "msg_", "id"),
    ("jobs", "id", "job_", "id"),
)
FIRST_DAY_AFTER = 2  # days from today (UTC) to the first day partition
DAYS_AHEAD = 7
ULID_DIGITS = "0123456789abcdefghjkmnpqrstvwxyz"

TRIGGERS = text(
    "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger "
    "WHERE tgrelid = CAST(:t AS regclass) AND NOT tgisinternal"
)


def _move_triggers_off(conn: Connection, table: str) -> list[str]:
    """Drop `table`'s own triggers (the jobs-ended notifications, any other); their
    CREATE statements, to make them again on the table that takes its name."""
    found = conn.execute(TRIGGERS, {"t": table}).all()
    for name, _ in found:
        op.execute(f"DROP TRIGGER {name} ON {table}")
    return [definition for _, definition in found]


def _bound(prefix: str, day: date) -> str:
    millis = int(datetime.combine(day, time(0), tzinfo=UTC).timestamp() * 1000)
    return prefix + str(ULID.from_int(millis << 80)).lower()[:10]


def _check_collation(conn: Connection) -> None:
    """Fail unless the database's collation orders ULID-shaped keys like bytes do."""
    samples = [f"job_{a}{b}" for a in ULID_DIGITS for b in ULID_DIGITS[::7]]
    same = conn.execute(
        text(
            "SELECT array_agg(k ORDER BY k) = array_agg(k ORDER BY k COLLATE \"C\") "
            "FROM unnest(CAST(:keys AS text[])) AS k"
        ),
        {"keys": samples},
    ).scalar_one()
    if not same:
        raise RuntimeError(
            "the database's default collation does not order ULID keys like bytes; "
            "day partitions need one that does (C, C.UTF-8, or a glibc/ICU locale)"
        )


def _index_defs(conn: Connection, table: str) -> list[str]:
    """CREATE INDEX statements of `table`'s indexes that back no constraint."""
    return list(
        conn.execute(
            text(
                """
                SELECT pg_get_indexdef(i.indexrelid) FROM pg_index AS i
                 WHERE i.indrelid = CAST(:t AS regclass)
                   AND NOT EXISTS (SELECT 1 FROM pg_constraint AS c
                                    WHERE c.conindid = i.indexrelid)
                """
            ),
            {"t": table},
        ).scalars()
    )


def _names(conn: Connection, sql: str, table: str) -> list[str]:
    return list(conn.execute(text(sql), {"t": table}).scalars())


def upgrade() -> None:
    conn = op.get_bind()
    _check_collation(conn)
    first = datetime.now(UTC).date() + timedelta(days=FIRST_DAY_AFTER)
    with op.get_context().autocommit_block():
        op.execute(
            "ALTER TABLE webhook_attempts DROP CONSTRAINT IF EXISTS webhook_attempts_event_id_fkey"
        )
        for table, key, prefix, _ in TABLES:
            check = f"{table}_legacy_range"
            op.execute(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {check}")
            op.execute(
                f"ALTER TABLE {table} ADD CONSTRAINT {check} "
                f"CHECK ({key} < '{_bound(prefix, first)}') NOT VALID"
            )
            # Keys at or past the bound (none where every key is a ULID made before now)
            # wait aside, through the key's index, and go back in below.
            op.execute(f"CREATE TABLE IF NOT EXISTS {table}_outside (LIKE {table})")
            op.execute(
                f"WITH moved AS (DELETE FROM {table} WHERE {key} >= '{_bound(prefix, first)}' "
                f"RETURNING *) INSERT INTO {table}_outside SELECT * FROM moved"
            )
            op.execute(f"ALTER TABLE {table} VALIDATE CONSTRAINT {check}")
        op.execute(
            "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS webhook_attempts_id_event "
            "ON webhook_attempts (id, event_id)"
        )
        # A tenant's jobs are listed newest first by ID (`api.plumbing.paging`); nothing
        # reads them by creation time.
        op.execute("CREATE INDEX CONCURRENTLY IF NOT EXISTS jobs_tenant_id ON jobs (tenant, id)")
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS jobs_tenant_created")
    triggers = [d for t, _, _, _ in TABLES for d in _move_triggers_off(conn, t)]
    op.execute("ALTER TABLE webhook_attempts DROP CONSTRAINT webhook_attempts_pkey")
    op.execute(
        "ALTER TABLE webhook_attempts ADD CONSTRAINT webhook_attempts_legacy_pkey "
        "PRIMARY KEY USING INDEX webhook_attempts_id_event"
    )
    for table, key, prefix, primary_key in TABLES:
        legacy = f"{table}_legacy"
        indexes = _index_defs(conn, table)
        checks = conn.execute(
            text(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = CAST(:t AS regclass) AND contype = 'c' AND conname <> :own"
            ),
            {"t": table, "own": f"{legacy}_range"},
        ).all()
        index_names = _names(
            conn,
            "SELECT CAST(CAST(indexrelid AS regclass) AS text) FROM pg_index "
            "WHERE indrelid = CAST(:t AS regclass)",
            table,
        )
        op.execute(f"ALTER TABLE {table} RENAME TO {legacy}")
        for name in index_names:
            if not name.startswith(legacy):
                op.execute(f"ALTER INDEX {name} RENAME TO {legacy}{name[len(table) :]}")
        op.execute(
            f"CREATE TABLE {table} (LIKE {legacy} INCLUDING DEFAULTS) "
            f"PARTITION BY RANGE ({key})"
        )
        for name, definition in checks:
            op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}")
        op.execute(f"ALTER TABLE {table} ADD PRIMARY KEY ({primary_key})")
        for definition in indexes:
            op.execute(definition)
        op.execute(
            f"ALTER TABLE {table} ATTACH PARTITION {legacy} "
            f"FOR VALUES FROM (MINVALUE) TO ('{_bound(prefix, first)}')"
        )
        op.execute(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT")
        for n in range(DAYS_AHEAD + 1):
            day = first + timedelta(days=n)
            op.execute(
                f"CREATE TABLE {table}_p{day:%Y%m%d} PARTITION OF {table} "
                f"FOR VALUES FROM ('{_bound(prefix, day)}') "
                f"TO ('{_bound(prefix, day + timedelta(days=1))}')"
            )
        op.execute(f"INSERT INTO {table} SELECT * FROM {table}_outside")
        op.execute(f"DROP TABLE {table}_outside")
    for definition in triggers:  # on the partitioned table, so on every partition
        op.execute(definition)


def downgrade() -> None:
    conn = op.get_bind()
    triggers = [d for t, _, _, _ in TABLES for d in _move_triggers_off(conn, t)]
    for table, _, _, _ in TABLES:
        old = f"{table}_partitioned"
        indexes = _index_defs(conn, table)
        checks = conn.execute(
            text(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = CAST(:t AS regclass) AND contype = 'c'"
            ),
            {"t": table},
        ).all()
        op.execute(f"ALTER TABLE {table} RENAME TO {old}")
        op.execute(f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS)")
        op.execute(f"INSERT INTO {table} SELECT * FROM {old}")
        op.execute(f"DROP TABLE {old}")
        for name, definition in checks:
            op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}")
        op.execute(f"ALTER TABLE {table} ADD PRIMARY KEY (id)")
        for definition in indexes:
            op.execute(definition)
    op.execute("CREATE INDEX jobs_tenant_created ON jobs (tenant, created_at)")
    op.execute("DROP INDEX jobs_tenant_id")
    op.execute(
        "ALTER TABLE webhook_attempts ADD CONSTRAINT webhook_attempts_event_id_fkey "
        "FOREIGN KEY (event_id) REFERENCES webhook_events (id)"
    )
    for definition in triggers:
        op.execute(definition)
