"""Sweeps against the real stack: unproduced jobs, expiry, and their metrics (retention:
test_partitions.py).

Most tests call the sweep functions in-process against the test database, the real
Kafka and the S3 server; one runs them the way production does, as beat tasks of a real
`python -m scheduler worker -B` process, and reads its `/metrics`. Other sweepers may
run against the same database at the same time (other test sessions), so the tests
check what is on Kafka and in Postgres, never how many rows one call handled.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from sqlalchemy import Engine, select

from inferfleet.clients.topics import Lane, ensure_topics, job_topic, model_topics
from inferfleet.ids import new_job_id
from inferfleet.jobs import messages
from inferfleet.jobs.messages import JobMessage
from inferfleet.settings import Settings
from inferfleet.tables import jobs, webhook_attempts, webhook_events
from scheduler.sweep_tasks import GroupPositions, Producer
from scheduler.sweeps import (
    expire_overdue,
    reproduce_stale,
    reproduce_unproduced,
)
from tests.integration.conftest import (
    SchedulerProcess,
    eventually,
    free_port,
    start_scheduler,
)

pytestmark = pytest.mark.integration

INPUTS = {
    "transaction_amount": 245.5,
    "merchant_category": "electronics",
    "user_account_age_days": 847,
    "hour_of_day": 14,
}
HOOK = {"url": "http://127.0.0.1:9/hooks"}


def now() -> datetime:
    return datetime.now(UTC)


def insert_job(engine: Engine, model: str, version: int = 1, **values: Any) -> str:
    """A job row as the API (or a batch ingest) would write it, `values` overriding."""
    row: dict[str, Any] = {
        "id": new_job_id(),
        "tenant": f"sweeps-{model}",
        "model": model,
        "version": version,
        "status": "queued",
        "lane": "interactive",
        "inputs": INPUTS,
        "metadata": {},
        "created_at": now(),
    } | values
    with engine.begin() as conn:
        conn.execute(jobs.insert().values(**row))
    return str(row["id"])


def job(engine: Engine, job_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(jobs).where(jobs.c.id == job_id)).one_or_none()


def on_topic(bootstrap: str, topic: str) -> list[JobMessage]:
    """Every message on `topic`, read from the beginning without a group."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not parts:
            return []
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        found: list[JobMessage] = []
        while any(consumer.position(tp) < ends[tp] for tp in parts):
            for records in consumer.poll(timeout_ms=1000).values():
                found.extend(messages.decode(r.value) for r in records)
        return found
    finally:
        consumer.close()


@pytest.fixture
def sweep_settings(settings: Settings) -> Settings:
    # Only rows older than five minutes count as never produced, so submits of tests
    # running beside this one are never swept.
    return settings.model_copy(update={"sweep_unproduced_after_s": 300.0, "sweep_chunk": 50})


@pytest.fixture
def producer(sweep_settings: Settings) -> Producer:
    return Producer(sweep_settings)


def test_a_job_never_produced_is_produced_once_to_its_lane_and_then_runs(
    engine: Engine,
    kafka: str,
    sweep_settings: Settings,
    producer: Producer,
    publish_model,
    start_worker,
) -> None:
    model = publish_model()
    created = now() - timedelta(hours=1)
    deadline = now() + timedelta(hours=1)
    lost = insert_job(
        engine, model.name, created_at=created, deadline=deadline, request_id="req-lost"
    )
    lost_batch = insert_job(
        engine, model.name, created_at=created, lane="batch", batch_id="bat_sweeptest"
    )
    produced = insert_job(engine, model.name, created_at=created, produced_at=created)
    fresh = insert_job(engine, model.name)  # its submit may still be producing it

    reproduce_unproduced(engine, producer.send, sweep_settings)

    interactive = on_topic(kafka, job_topic(model.name, "interactive"))
    assert [m.job_id for m in interactive] == [lost]
    (message,) = interactive
    assert message.inputs == INPUTS
    assert message.input_uri is None
    assert (message.tenant, message.model, message.version) == (
        f"sweeps-{model.name}",
        model.name,
        model.version,
    )
    assert message.request_id == "req-lost"
    assert message.deadline == deadline
    assert message.enqueued_at == created
    assert [m.job_id for m in on_topic(kafka, job_topic(model.name, "batch"))] == [lost_batch]
    assert job(engine, lost).produced_at is not None
    assert job(engine, fresh).produced_at is None

    reproduce_unproduced(engine, producer.send, sweep_settings)  # nothing twice
    assert len(on_topic(kafka, job_topic(model.name, "interactive"))) == 1

    start_worker(model.name).wait_ready()
    eventually(lambda: job(engine, lost).status == "succeeded", "the recovered job to run")
    assert job(engine, lost_batch).status == "succeeded"
    assert job(engine, produced).status == "queued", "a produced job is never produced again"


def produce_as_of(bootstrap: str, topic: str, row: Any, at: datetime) -> None:
    """The job's message, as its producer would have sent it at `at` (record timestamp)."""
    record = messages.record(topic, row._mapping)
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    try:
        stamp = int(at.timestamp() * 1000)
        producer.send(record.topic, key=record.key, value=record.value, timestamp_ms=stamp)
        producer.flush()
    finally:
        producer.close()


def commit_group(bootstrap: str, group: str, topic: str, at_end: bool) -> None:
    """Commit `group`'s offsets on every partition of `topic`: at the log end (it has
    read everything) or at the beginning (it has read nothing)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(parts)
        if at_end:
            consumer.seek_to_end(*parts)
        else:
            consumer.seek_to_beginning(*parts)
        for tp in parts:
            consumer.position(tp)
        consumer.commit()
    finally:
        consumer.close()


def test_a_produced_job_no_worker_claimed_is_produced_again_once_the_group_passed_it(
    engine: Engine, kafka: str, sweep_settings: Settings, publish_model, start_worker
) -> None:
    model = publish_model()
    group = f"workers-{model.name}"
    settings = sweep_settings.model_copy(update={"worker_group": group})
    interactive, batch = model_topics(model.name)
    ensure_topics(settings, [interactive, batch], settings.topic_partitions, 1)
    hour_ago = now() - timedelta(hours=1)
    # Its message was read and its offset committed, but no worker wrote the job: lost.
    lost = insert_job(engine, model.name, produced_at=hour_ago, request_id="req-stale")
    produce_as_of(kafka, interactive, job(engine, lost), hour_ago)
    # Produced a moment ago, so no sweep interval has passed yet: left alone.
    recent = insert_job(engine, model.name, produced_at=now() - timedelta(seconds=5))
    commit_group(kafka, group, interactive, at_end=True)
    # As old, but its message is still ahead of the group (a backlog): left alone.
    waiting = insert_job(engine, model.name, lane="batch", produced_at=hour_ago)
    produce_as_of(kafka, batch, job(engine, waiting), hour_ago)
    commit_group(kafka, group, batch, at_end=False)

    positions = GroupPositions(settings)
    try:
        reproduce_stale(engine, Producer(settings).send, positions.passed, settings)
        assert [m.job_id for m in on_topic(kafka, interactive)] == [lost, lost]
        assert [m.job_id for m in on_topic(kafka, batch)] == [waiting]
        assert job(engine, lost).produced_at > hour_ago + timedelta(minutes=59)
        assert job(engine, waiting).produced_at == hour_ago
        assert job(engine, recent).status == "queued"

        reproduce_stale(engine, Producer(settings).send, positions.passed, settings)
        assert len(on_topic(kafka, interactive)) == 2, "produced again once, not each run"
    finally:
        positions.close()

    start_worker(model.name, group=group).wait_ready()
    eventually(lambda: job(engine, lost).status == "succeeded", "the recovered job to run")
    eventually(lambda: job(engine, waiting).status == "succeeded", "the waiting job to run")
    assert job(engine, lost).request_id == "req-stale"
    assert job(engine, recent).status == "queued", "nothing produced it again"


def test_the_api_records_when_a_message_was_produced(
    engine: Engine, kafka: str, client: httpx.Client, publish_model
) -> None:
    model = publish_model()
    one = client.post("/v1/jobs", json={"model": model.name, "inputs": INPUTS})
    bulk = client.post(
        "/v1/jobs/bulk", json={"model": model.name, "items": [{"inputs": INPUTS}] * 3}
    )
    assert one.status_code == 202, one.text
    assert bulk.status_code == 202, bulk.text
    ids = [one.json()["id"], *bulk.json()["ids"]]

    assert all(job(engine, i).produced_at is not None for i in ids)
    assert sorted(m.job_id for m in on_topic(kafka, job_topic(model.name))) == sorted(ids)


def test_two_sweepers_at_once_produce_each_message_once(
    engine: Engine, kafka: str, sweep_settings: Settings, publish_model
) -> None:
    model = publish_model()
    created = now() - timedelta(hours=1)
    ids = {insert_job(engine, model.name, created_at=created) for _ in range(300)}

    def sweep() -> None:
        reproduce_unproduced(engine, Producer(sweep_settings).send, sweep_settings)

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)

    found = [m.job_id for m in on_topic(kafka, job_topic(model.name))]
    assert sorted(found) == sorted(ids)


def test_overdue_queued_jobs_expire_with_their_events(
    engine: Engine, sweep_settings: Settings, publish_model
) -> None:
    model = publish_model()
    past = now() - timedelta(minutes=1)
    overdue = insert_job(engine, model.name, deadline=past, webhook=HOOK)
    of_batch = insert_job(engine, model.name, deadline=past, webhook=HOOK, batch_id="bat_x")
    in_time = insert_job(engine, model.name, deadline=now() + timedelta(hours=1))
    running = insert_job(engine, model.name, deadline=past, status="running")

    expire_overdue(engine, sweep_settings)

    for job_id in (overdue, of_batch):
        row = job(engine, job_id)
        assert row.status == "expired"
        assert row.error["type"] == "expired"
        assert row.completed_at is not None
    assert job(engine, in_time).status == "queued"
    assert job(engine, running).status == "running", "a started job is the worker's"
    with engine.connect() as conn:
        events = conn.execute(
            select(webhook_events.c.job_id, webhook_events.c.type).where(
                webhook_events.c.job_id.in_([overdue, of_batch])
            )
        ).all()
        attempts = conn.execute(
            select(webhook_attempts.c.state).where(
                webhook_attempts.c.event_id == "msg_" + overdue[4:]
            )
        ).all()
    assert [tuple(e) for e in events] == [(overdue, "job.expired")]  # batch jobs fire none
    assert [a.state for a in attempts] == ["pending"]


METRIC = re.compile(r'^(inferfleet_\w+)\{(\w+)="(\w+)"\} ([\d.e+]+)$', re.MULTILINE)


@dataclass
class Scheduler(SchedulerProcess):
    metrics_url: str

    def metrics(self) -> dict[tuple[str, str], float]:
        body = httpx.get(self.metrics_url, timeout=5).text
        return {(name, label): float(value) for name, _, label, value in METRIC.findall(body)}


@pytest.fixture
def scheduler(tmp_path: Path, engine: Engine, kafka: str) -> Iterator[Scheduler]:
    """`python -m scheduler worker -B` sweeping every half second, metrics on a port."""
    port = free_port()
    env = {
        "INFERFLEET_REDIS_URL": "redis://127.0.0.1:6379/13",
        "INFERFLEET_TOPIC_PARTITIONS": "4",
        "INFERFLEET_SWEEP_INTERVAL_S": "0.5",
        "INFERFLEET_SWEEP_UNPRODUCED_AFTER_S": "300",
        "INFERFLEET_SCHEDULER_METRICS_PORT": str(port),
        # This process is here for the sweeps; other tests' webhooks, schedules and
        # batches are their own scheduler processes' business.
        "INFERFLEET_DISPATCH_INTERVAL_S": "1000000000",
        "INFERFLEET_SCHEDULE_TICK_S": "1000000000",
        "INFERFLEET_BATCH_POLL_S": "1000000000",
    }
    started = start_scheduler(tmp_path, "scheduler", env)
    running = Scheduler(started.log_path, started.proc, f"http://127.0.0.1:{port}/metrics")
    try:
        yield running
    finally:
        running.stop()


def test_the_scheduler_process_recovers_a_job_never_produced_and_counts_it(
    scheduler: Scheduler, engine: Engine, kafka: str, publish_model, start_worker
) -> None:
    def served() -> dict[tuple[str, str], float] | None:
        try:
            found = scheduler.metrics()
        except httpx.TransportError:
            return None
        return (
            found
            if ("inferfleet_sweep_last_run_timestamp_seconds", "unproduced") in found
            else None
        )

    before = eventually(served, "the scheduler's first unproduced sweep on /metrics")
    model = publish_model()
    start_worker(model.name).wait_ready()
    lane: Lane = "interactive"
    lost = insert_job(engine, model.name, created_at=now() - timedelta(hours=1), lane=lane)

    eventually(lambda: job(engine, lost).status == "succeeded", "the swept job to run", 120)
    assert job(engine, lost).produced_at is not None
    assert [m.job_id for m in on_topic(kafka, job_topic(model.name, lane))] == [lost]

    after = scheduler.metrics()
    last_run = ("inferfleet_sweep_last_run_timestamp_seconds", "unproduced")
    assert after[last_run] > before[last_run]
    reproduced = ("inferfleet_sweep_jobs_total", "reproduced")
    # Another session's sweeper may have taken the row first; then ours counted nothing.
    assert after[reproduced] >= before.get(reproduced, 0.0)
    assert ("inferfleet_sweep_jobs_total", "expired") in after
    assert ("inferfleet_sweep_last_run_timestamp_seconds", "expiry") in after
