"""The worker process against real Kafka and Postgres: crashes, drains, readiness, poison."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import numpy as np
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from sqlalchemy import Engine

from inferfleet.clients.topics import dlq_topic, job_topic
from inferfleet.models.sessions import open_session
from inferfleet.settings import Settings
from tests.integration.conftest import eventually, job_rows, terminal_writes
from tests.integration.test_jobs import onnx_reference, random_inputs


def submit_bulk(client: httpx.Client, model: str, inputs: list[dict]) -> list[str]:
    ids: list[str] = []
    for start in range(0, len(inputs), 5000):
        chunk = inputs[start : start + 5000]
        r = client.post(
            "/v1/jobs/bulk", json={"model": model, "items": [{"inputs": i} for i in chunk]}
        )
        assert r.status_code == 202, r.text
        ids.extend(r.json()["ids"])
    return ids


def statuses(engine: Engine, model: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in job_rows(engine, model):
        counts[row.status] = counts.get(row.status, 0) + 1
    return counts


def group_members(bootstrap: str, group: str) -> int:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return len(admin.describe_groups([group])[group]["members"])
    finally:
        admin.close()


def test_sigkill_mid_run_loses_no_job_and_answers_none_twice(
    client: httpx.Client, publish_model, start_worker, engine: Engine, fraud_package: Path
) -> None:
    model = publish_model()
    inputs = random_inputs(10_000, seed=11)
    ids = submit_bulk(client, model.name, inputs)

    # A short session timeout: the group moves a killed member's partitions sooner.
    fast = {"INFERFLEET_POLL_MAX_RECORDS": "250", "INFERFLEET_SESSION_TIMEOUT_MS": "6000"}
    first = start_worker(model.name, **fast)
    eventually(
        lambda: statuses(engine, model.name).get("succeeded", 0) >= 2000,
        "the first worker to finish some jobs",
        timeout=120,
    )
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(timeout=10)
    done_before_crash = statuses(engine, model.name).get("succeeded", 0)
    assert done_before_crash < len(ids), "the crash came too late to test anything"

    second = start_worker(model.name, **fast)
    eventually(
        lambda: statuses(engine, model.name) == {"succeeded": len(ids)},
        "every job to succeed after the restart",
        timeout=180,
    )
    assert second.proc.poll() is None

    rows = {r.id: r for r in job_rows(engine, model.name)}
    labels, probabilities = onnx_reference(fraud_package, inputs)
    for i, job_id in enumerate(ids):
        assert rows[job_id].outputs["label"] == int(labels[i])
        np.testing.assert_allclose(
            rows[job_id].outputs["probabilities"], probabilities[i], rtol=1e-5, atol=1e-6
        )
        assert rows[job_id].attempts in (1, 2)
    writes = terminal_writes(engine, ids)
    assert len(writes) == len(ids)
    assert set(writes.values()) == {1}, "a job was written into a terminal state twice"


def test_sigterm_finishes_the_batch_commits_and_exits_zero(
    client: httpx.Client, publish_model, start_worker, engine: Engine, kafka: str
) -> None:
    model = publish_model()
    worker = start_worker(model.name, INFERFLEET_POLL_MAX_RECORDS="500")
    worker.wait_ready()
    ids = submit_bulk(client, model.name, random_inputs(3000, seed=12))
    eventually(lambda: statuses(engine, model.name).get("succeeded", 0) > 0, "first results")
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(timeout=60) == 0, worker.log()
    assert "left the consumer group" in worker.log()
    # Nothing is left half-done: every job is queued (never polled) or succeeded.
    assert set(statuses(engine, model.name)) <= {"queued", "succeeded"}

    group = worker.env["INFERFLEET_WORKER_GROUP"]
    consumer = KafkaConsumer(bootstrap_servers=kafka, group_id=group, enable_auto_commit=False)
    try:
        topic = job_topic(model.name)
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        committed = sum(consumer.committed(tp) or 0 for tp in parts)
    finally:
        consumer.close()
    # Offsets committed on the way out cover exactly the jobs that finished.
    assert committed == statuses(engine, model.name).get("succeeded", 0)

    start_worker(model.name, group=group)
    eventually(lambda: statuses(engine, model.name) == {"succeeded": len(ids)}, "the rest to drain")


def test_not_ready_until_the_model_is_loaded_and_warm(
    client: httpx.Client,
    publish_model,
    start_worker,
    engine: Engine,
    kafka: str,
    settings: Settings,
    fraud_package: Path,
) -> None:
    model = publish_model(alias=None)  # registered, but no `production` alias yet
    worker = start_worker(model.name)
    eventually(lambda: "cannot load served models" in worker.log(), "the first load attempt")
    r = worker.readyz()
    assert r.status_code == 503
    assert r.json()["status"] == "not_ready"
    assert "production" in r.json()["reason"]
    assert group_members(kafka, worker.env["INFERFLEET_WORKER_GROUP"]) == 0

    from inferfleet.models.registry import set_alias

    with engine.begin() as conn:
        set_alias(conn, model.name, "production", model.version)
    worker.wait_ready(timeout=60)
    # The provider a session really runs on here (CUDA where a GPU build finds a GPU).
    provider = open_session(fraud_package / "model.onnx", settings).get_providers()[0]
    body = worker.readyz().json()
    assert body["models"] == [{"model": model.name, "version": "1", "provider": provider}]
    assert f"warm on {provider}" in worker.log()
    metrics = httpx.get(f"{worker.url}/metrics", timeout=5).text
    assert (
        f'inferfleet_worker_model_loaded{{model="{model.name}",provider="{provider}",version="1"}}'
        in metrics
    )
    r = client.post("/v1/jobs", json={"model": model.name, "inputs": random_inputs(1, 13)[0]})
    job = client.get(f"/v1/jobs/{r.json()['id']}", params={"wait": 30}).json()
    assert job["status"] == "succeeded"

    # The batch is measured once its offsets are committed, just after its result shows.
    timed = (
        "inferfleet_worker_submit_to_result_seconds_count"
        f'{{lane="interactive",model="{model.name}"}} 1.0'
    )
    eventually(
        lambda: timed in httpx.get(f"{worker.url}/metrics", timeout=5).text,
        "the job's submit-to-result time on the worker's /metrics",
    )
    metrics = httpx.get(f"{worker.url}/metrics", timeout=5).text
    topic = job_topic(model.name, "interactive")
    assert f'inferfleet_worker_consumed_records_total{{topic="{topic}"}} 1.0' in metrics
    assert "inferfleet_build_info{" in metrics


def test_poison_message_goes_to_the_dlq_and_the_worker_keeps_going(
    client: httpx.Client, publish_model, start_worker, engine: Engine, settings: Settings
) -> None:
    model = publish_model()
    worker = start_worker(model.name)
    worker.wait_ready()
    topic = job_topic(model.name)
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    producer.send(topic, key=b"junk", value=b"\x00not json")
    producer.send(topic, key=b"old", value=b'{"v": 99}')
    producer.flush()
    producer.close()
    ids = submit_bulk(client, model.name, random_inputs(50, seed=14))
    eventually(lambda: statuses(engine, model.name) == {"succeeded": 50}, "good jobs to finish")
    assert len(ids) == 50

    consumer = KafkaConsumer(
        dlq_topic(topic),
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,
    )
    dead = []
    for record in consumer:
        dead.append(record)
        if len(dead) == 2:
            break
    consumer.close()
    assert sorted(r.key for r in dead) == [b"junk", b"old"]
    for record in dead:
        headers = dict(record.headers)
        assert headers["inferfleet-error"], "the DLQ record carries its error"
    assert worker.proc.poll() is None


def test_a_job_past_its_deadline_is_expired_not_run(
    client: httpx.Client, publish_model, start_worker, engine: Engine
) -> None:
    model = publish_model()
    inputs = random_inputs(2, seed=15)
    late = client.post(
        "/v1/jobs", json={"model": model.name, "inputs": inputs[0], "ttl_seconds": 1}
    ).json()["id"]
    on_time = client.post(
        "/v1/jobs", json={"model": model.name, "inputs": inputs[1], "ttl_seconds": 3600}
    ).json()["id"]

    def deadline_passed() -> bool:
        with engine.connect() as conn:
            return bool(
                conn.exec_driver_sql(
                    "SELECT deadline < now() FROM jobs WHERE id = %s", (late,)
                ).scalar_one()
            )

    eventually(deadline_passed, "the short deadline to pass", timeout=10)
    start_worker(model.name)
    expired = client.get(f"/v1/jobs/{late}", params={"wait": 30}).json()
    assert expired["status"] == "expired"
    assert expired["error"]["type"] == "expired"
    assert expired["outputs"] is None
    assert expired["attempts"] == 0
    assert client.get(f"/v1/jobs/{on_time}", params={"wait": 30}).json()["status"] == "succeeded"
