"""Migration 0013 on a database with rows in it: from plain tables at revision 0012 to
day partitions, every row kept and reachable by ID, and back."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, text
from ulid import ULID

from inferfleet.jobs.partitions import partition_name
from tests.integration.conftest import AUDIT_SQL
from tests.integration.scratchdb import migrate, scratch_database

DAYS = 4  # days of history before the migration


def key_at(prefix: str, at: datetime) -> str:
    return f"{prefix}{str(ULID.from_datetime(at)).lower()}"


def fill(engine: Engine) -> dict[str, list[str]]:
    """Jobs of several days, each with an event and two attempts; their keys."""
    made: dict[str, list[str]] = {"jobs": [], "webhook_events": [], "webhook_attempts": []}
    now = datetime.now(UTC)
    # and one job whose ID is no ULID (as tests forge them): it sorts after every day
    forged = f"job_forged{uuid.uuid4().hex[:12]}"
    with engine.begin() as conn:
        for job_id in [key_at("job_", now - timedelta(hours=8 * n)) for n in range(DAYS * 3)] + [
            forged
        ]:
            event_id = "msg_" + job_id[4:]
            conn.execute(
                text(
                    "INSERT INTO jobs (id, tenant, model, version, status, lane, outputs, "
                    "completed_at) VALUES (:id, 'mig', 'm', 1, 'succeeded', 'interactive', "
                    "'{\"label\": 1}', now())"
                ),
                {"id": job_id},
            )
            conn.execute(
                text(
                    "INSERT INTO webhook_events (id, tenant, job_id, type, url, state, "
                    "retry_until) VALUES (:id, 'mig', :job, 'job.succeeded', 'http://x', "
                    "'delivered', now())"
                ),
                {"id": event_id, "job": job_id},
            )
            for attempt in (1, 2):
                attempt_id = f"dlv_{uuid.uuid4().hex}"
                conn.execute(
                    text(
                        "INSERT INTO webhook_attempts (id, event_id, attempt, state, due_at) "
                        "VALUES (:id, :event, :n, 'delivered', now())"
                    ),
                    {"id": attempt_id, "event": event_id, "n": attempt},
                )
                made["webhook_attempts"].append(attempt_id)
            made["jobs"].append(job_id)
            made["webhook_events"].append(event_id)
    return made


def found(engine: Engine, table: str, ids: list[str]) -> list[str]:
    """The IDs of `ids` found one by one, as the API and the worker look them up."""
    with engine.connect() as conn:
        return [
            i
            for i in ids
            if conn.execute(text(f"SELECT 1 FROM {table} WHERE id = :id"), {"id": i}).first()
        ]


def where(engine: Engine, job_id: str) -> str:
    with engine.connect() as conn:
        found: str = conn.execute(
            text("SELECT tableoid::regclass::text FROM jobs WHERE id = :id"), {"id": job_id}
        ).scalar_one()
        return found


def partitioned(engine: Engine, table: str) -> bool:
    with engine.connect() as conn:
        kind = conn.execute(
            text("SELECT relkind FROM pg_class WHERE relname = :t"), {"t": table}
        ).scalar_one()
        return bool(kind == "p")


def test_the_migration_keeps_every_row_and_new_rows_land_in_day_partitions() -> None:
    with scratch_database("0012") as (engine, url):
        made = fill(engine)
        with engine.begin() as conn:  # as the test suite's database has it
            conn.exec_driver_sql(AUDIT_SQL)

        migrate(url, "head")
        with engine.begin() as conn:
            conn.exec_driver_sql(AUDIT_SQL)

        for table, ids in made.items():
            assert partitioned(engine, table)
            assert found(engine, table, ids) == ids
        with engine.connect() as conn:
            placed = set(conn.execute(text("SELECT tableoid::regclass::text FROM jobs")).scalars())
            first = conn.execute(
                text(
                    "SELECT min(relname) FROM pg_class WHERE relname LIKE 'jobs\\_p%' "
                    "AND relkind = 'r'"
                )
            ).scalar_one()
        assert placed == {"jobs_legacy", "jobs_default"}, "the old rows stay where they were"
        forged = [i for i in made["jobs"] if "forged" in i]
        assert [where(engine, i) for i in forged] == ["jobs_default"]
        day = datetime.strptime(first[-8:], "%Y%m%d").replace(tzinfo=UTC)
        new_id = key_at("job_", day + timedelta(hours=1))
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO jobs (id, tenant, model, version, status, lane) "
                    "VALUES (:id, 'mig', 'm', 1, 'queued', 'interactive')"
                ),
                {"id": new_id},
            )
        assert where(engine, new_id) == partition_name("jobs", day.date())
        with engine.begin() as conn:  # the old table's trigger moved, not doubled
            conn.execute(
                text("UPDATE jobs SET status = 'failed' WHERE id = ANY(:ids)"),
                {"ids": [made["jobs"][0], new_id]},
            )
            audited = conn.execute(text("SELECT job_id FROM test_terminal_writes")).scalars()
            assert sorted(audited) == sorted([made["jobs"][0], new_id])

        migrate(url, "0012", down=True)

        for table, ids in made.items():
            assert not partitioned(engine, table)
            assert found(engine, table, ids) == ids
        assert found(engine, "jobs", [new_id]) == [new_id]
        with engine.connect() as conn:
            foreign_keys = conn.execute(
                text(
                    "SELECT count(*) FROM pg_constraint WHERE contype = 'f' "
                    "AND conrelid = CAST('webhook_attempts' AS regclass)"
                )
            ).scalar_one()
        assert foreign_keys == 1
