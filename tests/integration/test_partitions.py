"""Day partitions (`inferfleet.jobs.partitions`, `scheduler.partitions`) in a database of
each test's own: where keys land around midnight, days made ahead, the default
partition, and retention by dropping days (and holding those with a straggler)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text
from ulid import ULID

from inferfleet.clients.objectstore import exists, put_bytes
from inferfleet.ids import batch_job_id
from inferfleet.jobs.claims import CLAIM_PREFIX, RESULTS_PREFIX
from inferfleet.jobs.partitions import partition_name, spans
from inferfleet.settings import Settings
from scheduler.partitions import create_ahead, default_rows, drop_expired
from tests.integration.scratchdb import scratch_database

TENANT = "parts"


def key_at(prefix: str, at: datetime) -> str:
    return f"{prefix}{str(ULID.from_datetime(at)).lower()}"


def first_day(engine: Engine) -> datetime:
    """The start of the first day partition the migration made."""
    with engine.connect() as conn:
        return min(s.end for s in spans(conn) if s.start is None)


def where(engine: Engine, table: str, key: str, value: str) -> str | None:
    with engine.connect() as conn:
        found: str | None = conn.execute(
            text(f"SELECT tableoid::regclass::text FROM {table} WHERE {key} = :v"), {"v": value}
        ).scalar()
        return found


def add_job(conn: Any, job_id: str, status: str = "succeeded", **values: Any) -> None:
    row = {
        "id": job_id,
        "status": status,
        "batch_id": None,
        "line": None,
        "input_uri": None,
        "output_uri": None,
        "completed_at": datetime.now(UTC) if status != "queued" else None,
    } | values
    conn.execute(
        text(
            "INSERT INTO jobs (id, tenant, model, version, status, lane, batch_id, line, "
            "input_uri, output_uri, completed_at) VALUES (:id, 'parts', 'm', 1, :status, "
            "'interactive', :batch_id, :line, :input_uri, :output_uri, :completed_at)"
        ),
        row,
    )


def add_event(conn: Any, owner_id: str) -> str:
    event_id = "msg_" + owner_id[4:]
    conn.execute(
        text(
            "INSERT INTO webhook_events (id, tenant, job_id, type, url, state, retry_until) "
            "VALUES (:id, 'parts', :job, 'job.succeeded', 'http://x', 'delivered', now())"
        ),
        {"id": event_id, "job": owner_id},
    )
    for attempt in (1, 2):
        conn.execute(
            text(
                "INSERT INTO webhook_attempts (id, event_id, attempt, state, due_at) "
                "VALUES (:id, :event, :n, 'delivered', now())"
            ),
            {"id": f"dlv_{uuid.uuid4().hex}", "event": event_id, "n": attempt},
        )
    return event_id


def add_batch(conn: Any, batch_id: str, status: str) -> None:
    now = datetime.now(UTC)
    conn.execute(
        text(
            "INSERT INTO batches (id, tenant, model, version, status, input_uri, "
            "output_prefix, completed_at) VALUES (:id, 'parts', 'm', '1', :status, "
            "'s3://b/in.jsonl', 's3://b/out/', :done)"
        ),
        {"id": batch_id, "status": status, "done": None if status == "running" else now},
    )


@pytest.fixture
def scratch() -> Iterator[Engine]:
    with scratch_database() as (engine, _):
        yield engine


def test_keys_just_before_and_after_midnight_land_in_their_days(scratch: Engine) -> None:
    first = first_day(scratch)
    midnight = first + timedelta(days=1)
    before, after = midnight - timedelta(milliseconds=1), midnight
    ids = {"legacy": key_at("job_", first - timedelta(milliseconds=1))}
    ids |= {"before": key_at("job_", before), "after": key_at("job_", after)}
    with scratch.begin() as conn:
        for job_id in ids.values():
            add_job(conn, job_id)
            add_event(conn, job_id)

    assert where(scratch, "jobs", "id", ids["legacy"]) == "jobs_legacy"
    assert where(scratch, "jobs", "id", ids["before"]) == partition_name("jobs", first.date())
    assert where(scratch, "jobs", "id", ids["after"]) == partition_name("jobs", midnight.date())
    for table, key in (("webhook_events", "id"), ("webhook_attempts", "event_id")):
        event = "msg_" + ids["after"][4:]
        assert where(scratch, table, key, event) == partition_name(table, midnight.date())
        event = "msg_" + ids["before"][4:]
        assert where(scratch, table, key, event) == partition_name(table, first.date())


def test_days_are_made_ahead_and_a_key_of_no_day_lands_in_the_default(
    scratch: Engine, settings: Settings
) -> None:
    first = first_day(scratch)
    later = first + timedelta(days=30)
    ahead = settings.model_copy(update={"partition_days_ahead": 3})

    assert create_ahead(scratch, ahead, today=later) == 4
    assert create_ahead(scratch, ahead, today=later) == 0, "days already there are kept"
    # Today and tomorrow lie in the legacy partition's range, the next days exist.
    assert create_ahead(scratch, ahead) == 0
    inside = key_at("job_", later + timedelta(days=3, hours=23))
    beyond = key_at("job_", later + timedelta(days=4))
    with scratch.begin() as conn:
        add_job(conn, inside, "queued")
        add_job(conn, beyond, "queued")

    assert where(scratch, "jobs", "id", inside) == partition_name(
        "jobs", (later + timedelta(days=3)).date()
    )
    assert where(scratch, "jobs", "id", beyond) == "jobs_default"
    assert default_rows(scratch) == {"webhook_attempts": 0, "webhook_events": 0, "jobs": 1}


def tables(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(
            conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            ).scalars()
        )


def test_retention_drops_days_that_keep_nothing_and_holds_those_with_a_straggler(
    scratch: Engine, s3: Any, settings: Settings
) -> None:
    bucket = f"parts-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    kept_settings = settings.model_copy(update={"s3_bucket": bucket})
    first = first_day(scratch)
    day = [first + timedelta(days=n, hours=12) for n in range(3)]
    done = key_at("job_", day[0])
    old = key_at("job_", first - timedelta(days=45))
    finished_batch = key_at("bat_", day[0])
    open_job, open_job_day_done = key_at("job_", day[1]), key_at("job_", day[1])
    running_batch = key_at("bat_", day[2])
    objects = {
        "claim": f"s3://{bucket}/{CLAIM_PREFIX}/{done}.json",
        "result": f"s3://{bucket}/{RESULTS_PREFIX}/{TENANT}/{done}.json",
        "old_claim": f"s3://{bucket}/{CLAIM_PREFIX}/{old}.json",
        "held_claim": f"s3://{bucket}/{CLAIM_PREFIX}/{open_job}.json",
        "client": f"s3://{bucket}/tenants/{TENANT}/{done}.json",
    }
    for uri in objects.values():
        put_bytes(s3, uri, b"{}")
    with scratch.begin() as conn:
        add_job(conn, done, input_uri=objects["claim"], output_uri=objects["result"])
        add_event(conn, done)
        add_job(conn, old, input_uri=objects["old_claim"])
        add_batch(conn, finished_batch, "completed")
        for line in (1, 2):
            add_job(conn, batch_job_id(finished_batch, line), batch_id=finished_batch, line=line)
        add_job(conn, open_job, "queued", input_uri=objects["held_claim"])
        add_job(conn, open_job_day_done)
        add_batch(conn, running_batch, "running")
        add_job(conn, batch_job_id(running_batch, 1), batch_id=running_batch, line=1)
    later = datetime.now(UTC) + timedelta(days=40)  # every day made so far is past

    assert (
        drop_expired(
            scratch, s3, kept_settings.model_copy(update={"result_retention_days": 0}), now=later
        ).partitions_dropped
        == 0
    )
    result = drop_expired(scratch, s3, kept_settings, now=later)

    held = {f"p{d:%Y%m%d}" for d in day[1:]}
    assert set(result.reasons) == held
    assert sorted(result.reasons.values()) == ["a batch is kept", "a job is not finished"]
    assert result.held == 2
    assert result.oldest_held_age_s >= (later - (first + timedelta(days=2))).total_seconds()
    left = tables(scratch)
    for table in ("jobs", "webhook_events", "webhook_attempts"):
        assert partition_name(table, day[0].date()) not in left
        assert f"{table}_legacy" not in left
        assert {partition_name(table, d.date()) for d in day[1:]} <= left
    assert result.batches_deleted == 1
    with scratch.connect() as conn:
        jobs_left = set(conn.execute(text("SELECT id FROM jobs")).scalars())
        batches_left = set(conn.execute(text("SELECT id FROM batches")).scalars())
    assert jobs_left == {open_job, open_job_day_done, batch_job_id(running_batch, 1)}
    assert batches_left == {running_batch}
    assert [k for k in ("claim", "result", "old_claim") if exists(s3, objects[k])] == []
    assert exists(s3, objects["held_claim"]), "a held day's objects stay"
    assert exists(s3, objects["client"]), "a client's own object stays"

    with scratch.begin() as conn:  # the straggler ends: its day goes on the next run
        conn.execute(
            text("UPDATE jobs SET status = 'failed', completed_at = now() WHERE id = :id"),
            {"id": open_job},
        )
    again = drop_expired(scratch, s3, kept_settings, now=later)
    assert again.partitions_dropped == 1
    assert again.held == 1
    assert not exists(s3, objects["held_claim"])
