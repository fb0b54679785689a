"""The gauges measured from real services: the worker's queue probe on Kafka, the API's
webhook backlog on Postgres."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata
from sqlalchemy import Engine, text

from api.plumbing.metrics import OUTBOX_BACKLOG
from inferfleet.clients.topics import ensure_topics, model_topics
from inferfleet.settings import Settings
from worker.metrics import QueueProbe, WorkerMetrics

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_queue_probe_measures_lag_oldest_job_rate_and_drain_time(
    settings: Settings, kafka: str
) -> None:
    model = f"t-{uuid.uuid4().hex[:10]}"
    group = f"probe-{model}"
    s = settings.model_copy(update={"worker_models": [model], "worker_group": group})
    interactive, batch = model_topics(model)
    ensure_topics(s, [interactive, batch], s.topic_partitions, s.topic_replication)
    partitions = s.topic_partitions
    # Records stamped two minutes ago, so their age says they were read, not when.
    stamped = int(time.time() * 1000) - 120_000
    producer = KafkaProducer(bootstrap_servers=kafka)
    for i in range(10 * partitions):
        producer.send(interactive, b"{}", key=b"k", partition=i % partitions, timestamp_ms=stamped)
    for _ in range(10):
        producer.send(batch, b"{}", key=b"k", partition=0, timestamp_ms=stamped)
    producer.flush()
    producer.close()

    metrics = WorkerMetrics()
    clock = Clock()
    probe = QueueProbe(s, metrics, clock=clock)

    def value(name: str, topic: str) -> float | None:
        return metrics.registry.get_sample_value(name, {"topic": topic})

    try:
        probe.measure()
        assert value("inferfleet_worker_consumer_lag_records", interactive) == 10 * partitions
        assert value("inferfleet_worker_consumer_lag_records", batch) == 10
        for topic in (interactive, batch):
            age = value("inferfleet_worker_oldest_unconsumed_age_seconds", topic)
            assert age is not None
            assert age >= 110
        # One measurement gives no rate yet, so no drain estimate either.
        assert value("inferfleet_worker_drain_time_seconds", interactive) is None

        # The group commits 4 records of every interactive partition, and the whole
        # batch partition, within 10 s of the probe's clock.
        committer = KafkaConsumer(bootstrap_servers=kafka, group_id=group, enable_auto_commit=False)
        done = {
            TopicPartition(interactive, p): OffsetAndMetadata(4, "", -1) for p in range(partitions)
        }
        done[TopicPartition(batch, 0)] = OffsetAndMetadata(10, "", -1)
        committer.assign(list(done))
        committer.commit(done)
        committer.close(autocommit=False)
        clock.now += 10

        probe.measure()
        assert value("inferfleet_worker_consumer_lag_records", interactive) == 6 * partitions
        # 0.4 records/s per partition: the remaining 6 per partition drain in 15 s.
        assert value("inferfleet_worker_drain_time_seconds", interactive) == pytest.approx(15.0)
        assert value("inferfleet_worker_consumer_lag_records", batch) == 0
        assert value("inferfleet_worker_oldest_unconsumed_age_seconds", batch) == 0
        assert value("inferfleet_worker_drain_time_seconds", batch) == 0
    finally:
        probe.close()


def test_queue_probe_without_kafka_reports_nothing_stale(settings: Settings) -> None:
    s = settings.model_copy(update={"kafka_bootstrap": "127.0.0.1:1"})
    metrics = WorkerMetrics()
    metrics.consumer_lag.labels("inferfleet.jobs.x.interactive").set(5)
    probe = QueueProbe(s, metrics, interval_s=0.05)
    probe.start()
    try:
        deadline = time.monotonic() + 60
        while not metrics.registry.get_sample_value("inferfleet_worker_queue_probe_errors_total"):
            assert time.monotonic() < deadline, "the probe never reported its failure"
            time.sleep(0.1)
    finally:
        probe.stop()
    assert (
        metrics.registry.get_sample_value(
            "inferfleet_worker_consumer_lag_records", {"topic": "inferfleet.jobs.x.interactive"}
        )
        is None
    )


def test_outbox_backlog_counts_due_and_scheduled_attempts(engine: Engine) -> None:
    event = f"msg_test_{uuid.uuid4().hex}"
    # One transaction, rolled back: no dispatcher of another test ever sees these rows.
    with engine.connect() as conn, conn.begin() as tx:
        before = conn.execute(OUTBOX_BACKLOG).one()
        conn.execute(
            text(
                "INSERT INTO webhook_events (id, tenant, type, url, state, retry_until) "
                "VALUES (:id, 't-metrics', 'job.succeeded', 'https://example.com/hook', "
                "'pending', now() + interval '1 day')"
            ),
            {"id": event},
        )
        conn.execute(
            text(
                "INSERT INTO webhook_attempts (id, event_id, attempt, state, due_at) VALUES "
                "(:id || '_1', :id, 1, 'failed', now() - interval '2 hours'), "
                "(:id || '_2', :id, 2, 'pending', now() - interval '1 hour'), "
                "(:id || '_3', :id, 3, 'pending', now() + interval '1 hour')"
            ),
            {"id": event},
        )
        after = conn.execute(OUTBOX_BACKLOG).one()
        tx.rollback()
    assert after.due == before.due + 1
    assert after.scheduled == before.scheduled + 1
    assert after.oldest_due_s >= 3600


def test_the_api_serves_the_webhook_backlog(api_url: str) -> None:
    text_ = httpx.get(f"{api_url}/metrics", timeout=10).text
    samples = [line for line in text_.splitlines() if not line.startswith("#")]
    assert any(
        line.startswith('inferfleet_webhook_pending_attempts{state="due"}') for line in samples
    )
    assert any(line.startswith("inferfleet_webhook_oldest_due_age_seconds ") for line in samples)
