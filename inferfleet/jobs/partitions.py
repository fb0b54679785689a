"""Day partitions of `jobs`, `webhook_events` and `webhook_attempts`.

The three tables are range-partitioned on a ULID-shaped text key, one partition per UTC
day, so that a day's rows go together by dropping its partitions:

- `jobs` on `id` (`job_` + ULID). A job ID carries its creation time, and a batch's
  jobs carry the batch's (`inferfleet.ids.batch_job_id`), so a batch and all its jobs
  share one day. Keying on the ID keeps `id` the primary key, and every lookup by job ID
  (`WHERE id = …`, `id = ANY(…)`) is pruned to one partition with no change to the query.
- `webhook_events` on `id` (`msg_` + the ULID of its job or batch,
  `inferfleet.jobs.outbox`): an event lies in its job's (or batch's) day.
- `webhook_attempts` on `event_id`: an attempt lies in its event's day. Its primary key
  becomes (`id`, `event_id`), since a unique key of a partitioned table must hold the
  partition key; attempt IDs are random, so this allows no duplicate the old key did.

A day's bound is its prefix (`job_`, `msg_`) and the ULID time part (10 characters) of
its first millisecond: every ID made in that day sorts at or after it and before the
next day's. Bounds compare under the key column's collation; for these keys (one prefix,
then lowercase Crockford base32) any collation that sorts digits before lowercase
letters, in order, agrees with byte order, and migration 0013 checks the database's.

Besides its day partitions each table has `<table>_legacy`, the table as it was before
migration 0013 (every key below the first day partition's bound), and
`<table>_default`, which takes a key no partition covers (a day not created yet, or an
ID of another shape), so an insert never fails for want of a partition. Rows in a
default partition are never dropped by retention; the scheduler reports how many there
are (`inferfleet_partition_default_rows{table}`) and keeps creating days ahead so that
none land there.

There is no foreign key from attempts to events: a key referencing a partitioned table
would forbid dropping a day of events without first detaching (and scanning) the
attempts of that day. The two are written only together (`inferfleet.jobs.outbox`,
`scheduler.dispatch`) and dropped together, one day at a time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Connection, text
from ulid import ULID

RANDOM_BITS = 80  # of a ULID's 128 bits, those after its 48-bit millisecond time


@dataclass(frozen=True)
class Partitioned:
    """A day-partitioned table: its name, the key column, the key's prefix."""

    table: str
    key: str
    prefix: str


JOBS = Partitioned("jobs", "id", "job_")
EVENTS = Partitioned("webhook_events", "id", "msg_")
ATTEMPTS = Partitioned("webhook_attempts", "event_id", "msg_")
# Dropped in this order: nothing refers to attempts, attempts to events, events to jobs.
TABLES = (ATTEMPTS, EVENTS, JOBS)
BATCH_PREFIX = "bat_"  # batch IDs carry their time like job IDs do

LEGACY = "legacy"
DEFAULT = "default"
DAY_NAME = re.compile(r"_p(\d{8})$")


def time_part(at: datetime) -> str:
    """The ULID time part (10 characters, lowercase) of the millisecond `at`."""
    millis = int(at.timestamp() * 1000)
    return str(ULID.from_int(millis << RANDOM_BITS)).lower()[:10]


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def bound(prefix: str, day: date) -> str:
    """The lower bound of `day`'s partition, and the upper bound of the day before."""
    return prefix + time_part(day_start(day))


def time_of(key: str) -> datetime:
    """The creation time a ULID-shaped key (`job_…`, `msg_…`, `bat_…`) carries."""
    part = key[4:14].upper().ljust(26, "0")
    return ULID.from_str(part).datetime


def partition_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def day_of(partition: str) -> date | None:
    """The day of a day partition's name; None for the legacy or default partition."""
    found = DAY_NAME.search(partition)
    return datetime.strptime(found.group(1), "%Y%m%d").date() if found else None


def create_day(conn: Connection, day: date) -> bool:
    """Create `day`'s partition of each table unless one covers it already (its own, or
    the legacy partition's range); whether one was made.

    With a default partition present Postgres checks that it holds no row of the new
    range (a scan of the default, which stays empty while days are created ahead); if it
    holds one, the statement fails and names the default partition.
    """
    start = day_start(day)
    if any((s.start is None or s.start <= start) and start < s.end for s in spans(conn)):
        return False
    for t in TABLES:
        lo, hi = bound(t.prefix, day), bound(t.prefix, day + timedelta(days=1))
        conn.execute(
            text(
                f"CREATE TABLE IF NOT EXISTS {partition_name(t.table, day)} "
                f"PARTITION OF {t.table} FOR VALUES FROM ('{lo}') TO ('{hi}')"
            )
        )
    return True


@dataclass(frozen=True)
class Span:
    """The partitions holding one span of time, in every table: a day, or the legacy
    range (`start` None: everything before `end`)."""

    suffix: str  # `p20261205` or `legacy`
    start: datetime | None
    end: datetime

    def name(self, table: str) -> str:
        return f"{table}_{self.suffix}"

    def key_range(self, prefix: str) -> tuple[str | None, str]:
        """[low, high) of the keys with `prefix` made in this span."""
        low = None if self.start is None else prefix + time_part(self.start)
        return low, prefix + time_part(self.end)


BOUNDS = text(
    """
    SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound
      FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid
     WHERE i.inhparent = CAST(:parent AS regclass)
    """
)
RANGE = re.compile(r"FROM \((MINVALUE|'[^']*')\) TO \('([^']*)'\)")


def spans(conn: Connection) -> list[Span]:
    """The spans of the `jobs` partitions (the default aside), oldest first."""
    found = []
    for row in conn.execute(BOUNDS, {"parent": JOBS.table}):
        matched = RANGE.search(row.bound)
        if matched is None:  # the default partition
            continue
        low, high = matched.groups()
        start = None if low == "MINVALUE" else time_of(low.strip("'"))
        found.append(Span(row.relname.removeprefix(f"{JOBS.table}_"), start, time_of(high)))
    return sorted(found, key=lambda s: s.end)
