"""Priority lanes on the real stack: interactive jobs overtake a batch backlog.

A batch's jobs are inserted and produced to the model's `batch` topic the way a batch
ingest does; once a real worker is busy with them, interactive jobs are submitted over
the API. Every interactive job must finish before the batch's last job does. Nothing is
timed: only the order of `completed_at` is compared.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from psycopg.types.json import Jsonb
from sqlalchemy import Engine, text

from inferfleet.clients.broker import Record, make_producer, send_all
from inferfleet.clients.topics import ensure_topics, job_topic, model_topics
from inferfleet.ids import new_job_id
from inferfleet.jobs import messages
from inferfleet.models.registry import ModelVersion
from inferfleet.settings import Settings
from tests.integration.conftest import eventually
from worker.consume import JobConsumer

pytestmark = pytest.mark.integration

BATCH_JOBS = 20_000
INTERACTIVE_JOBS = 10
INPUTS = {
    "transaction_amount": 245.5,
    "merchant_category": "electronics",
    "user_account_age_days": 847,
    "hour_of_day": 14,
}
COLUMNS = (
    "id",
    "tenant",
    "model",
    "version",
    "status",
    "lane",
    "inputs",
    "batch_id",
    "line",
    "produced_at",
)


def queue_batch(
    settings: Settings, engine: Engine, version: ModelVersion, batch_id: str, count: int
) -> list[str]:
    """Insert `count` queued batch-lane rows, then produce them to the batch topic.

    `produced_at` goes in with the rows: set after the produce, it would update rows the
    worker may already hold, which can deadlock with the worker's own updates.
    """
    ids = [new_job_id() for _ in range(count)]
    now = datetime.now(UTC)
    tenant = f"lanes-{version.name}"
    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        sql = f"COPY jobs ({', '.join(COLUMNS)}) FROM STDIN"
        with raw.cursor() as cursor, cursor.copy(sql) as copy:
            for line, job_id in enumerate(ids, start=1):
                copy.write_row(
                    (
                        job_id,
                        tenant,
                        version.name,
                        version.version,
                        "queued",
                        "batch",
                        Jsonb(INPUTS),
                        batch_id,
                        line,
                        now,
                    )
                )
    topic = job_topic(version.name, "batch")
    records = [
        Record(
            topic,
            job_id.encode(),
            messages.encode(
                messages.JobMessage(
                    job_id=job_id,
                    tenant=tenant,
                    model=version.name,
                    version=version.version,
                    inputs=INPUTS,
                    input_uri=None,
                    enqueued_at=now,
                    deadline=None,
                    request_id=batch_id,
                )
            ),
        )
        for job_id in ids
    ]
    producer = make_producer(settings, client_id="test-lanes")
    try:
        send_all(producer, records, timeout_s=60)
    finally:
        producer.close(timeout=10)
    return ids


def test_the_consumer_hands_out_interactive_records_ahead_of_a_fetched_backlog(
    settings: Settings, kafka: str
) -> None:
    model = f"lanes-{uuid.uuid4().hex[:8]}"
    interactive, batch = model_topics(model)
    ensure_topics(settings, [interactive, batch], partitions=2, replication=1)
    producer = make_producer(settings, client_id="test-lanes")
    backlog = [Record(batch, f"b{i}".encode(), b"x") for i in range(5000)]
    send_all(producer, backlog, timeout_s=60)
    consumer = JobConsumer(
        settings.model_copy(update={"worker_group": f"g-{model}", "poll_max_records": 100}),
        [interactive, batch],
    )
    seen: list[Any] = []

    def read_until(done: Callable[[], bool], what: str) -> None:
        def check() -> bool:
            seen.extend(consumer.poll())
            return done()

        eventually(check, what, timeout=120)

    try:
        read_until(lambda: bool(seen), "the backlog's first records")
        for n in range(5):
            key = f"i{n}".encode()
            send_all(producer, [Record(interactive, key, b"x")], timeout_s=10)
            read_until(lambda k=key: any(r.key == k for r in seen), f"interactive record {n}")
            unread = len(backlog) - sum(r.topic == batch for r in seen)
            assert unread > 0, f"interactive record {n} came only after the whole backlog"
        read_until(lambda: len(seen) >= len(backlog) + 5, "the rest of the backlog")
        assert consumer.commit()
    finally:
        consumer.close()
        producer.close(timeout=5)
    keys = sorted(r.key for r in seen)
    assert keys == sorted([r.key for r in backlog] + [f"i{n}".encode() for n in range(5)])


def finished(engine: Engine, batch_id: str) -> int:
    with engine.connect() as conn:
        done: int = conn.execute(
            text("SELECT count(*) FROM jobs WHERE batch_id = :b AND status = 'succeeded'"),
            {"b": batch_id},
        ).scalar_one()
        return done


def completion_times(engine: Engine, ids: list[str]) -> dict[str, Any]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT id, status, completed_at FROM jobs WHERE id = ANY(:ids)"), {"ids": ids}
        )
        return {r.id: r for r in rows}


def test_interactive_jobs_submitted_during_a_batch_finish_before_the_batch(
    settings: Settings,
    engine: Engine,
    client: httpx.Client,
    publish_model,
    start_worker,
) -> None:
    version = publish_model()
    batch_id = f"bat_{uuid.uuid4().hex}"
    queue_batch(settings, engine, version, batch_id, BATCH_JOBS)
    # Small polls make the backlog many batches long, so the worker is still deep in it
    # when the interactive jobs arrive.
    start_worker(version.name, INFERFLEET_POLL_MAX_RECORDS="100").wait_ready()
    eventually(lambda: finished(engine, batch_id) > 0, "the worker to start on the batch")

    interactive: list[str] = []
    batch_done_at_submit: list[int] = []
    for _ in range(INTERACTIVE_JOBS):
        r = client.post("/v1/jobs", json={"model": version.name, "inputs": INPUTS})
        assert r.status_code == 202, r.text
        interactive.append(r.json()["id"])
        batch_done_at_submit.append(finished(engine, batch_id))

    eventually(
        lambda: finished(engine, batch_id) == BATCH_JOBS,
        "every batch job to finish",
        timeout=300,
    )
    got = completion_times(engine, interactive)
    assert {r.status for r in got.values()} == {"succeeded"}
    with engine.connect() as conn:
        last_batch = conn.execute(
            text("SELECT max(completed_at) FROM jobs WHERE batch_id = :b"), {"b": batch_id}
        ).scalar_one()
    late = [job_id for job_id, r in got.items() if r.completed_at >= last_batch]
    assert not late, (
        f"{len(late)} interactive job(s) finished with or after the batch's last job; "
        f"batch jobs done when each was submitted: {batch_done_at_submit}"
    )
