"""The worker process against real Kafka and Postgres: crashes, drains, readiness, poison."""

from __future__ import annotations

import json
import signal
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import numpy as np
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
from sqlalchemy import Engine, text

from inferfleet.clients.objectstore import put_bytes
from inferfleet.clients.topics import dlq_topic, ensure_topics, job_topic, model_topics
from inferfleet.ids import new_job_id
from inferfleet.jobs import messages
from inferfleet.jobs.messages import JobMessage
from inferfleet.models.registry import ModelVersion
from inferfleet.models.sessions import open_session
from inferfleet.settings import Settings
from inferfleet.tables import jobs
from tests.integration.conftest import enqueue_forged, eventually, job_rows, terminal_writes
from tests.integration.forwarder import forwarding
from tests.integration.ownbroker import OwnBroker
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
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT status, count(*) AS n FROM jobs WHERE model = :m GROUP BY status"),
            {"m": model},
        )
        return {row.status: row.n for row in rows}


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
    # The worker is frozen before it is killed, so the test sees what the kill interrupts. One
    # fast enough to drain the backlog between two looks gets another wave, and is frozen again.
    for wave in range(1, 6):
        eventually(
            lambda: statuses(engine, model.name).get("succeeded", 0) >= len(ids) - 8000,
            "the first worker to finish some jobs",
            timeout=120,
        )
        first.proc.send_signal(signal.SIGSTOP)
        if statuses(engine, model.name).get("succeeded", 0) < len(ids):
            break
        first.proc.send_signal(signal.SIGCONT)
        more = random_inputs(10_000, seed=100 + wave)
        inputs.extend(more)
        ids.extend(submit_bulk(client, model.name, more))
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


# --- outages and lost claims: the worker waits, rewinds and goes on ---------------


def forged(model: ModelVersion, **fields: Any) -> JobMessage:
    """A job message of `model` for tenant `acme`, `fields` over random valid inputs."""
    values: dict[str, Any] = {
        "job_id": new_job_id(),
        "tenant": "acme",
        "model": model.name,
        "version": model.version,
        "inputs": random_inputs(1, seed=16)[0],
        "input_uri": None,
        "enqueued_at": datetime.now(UTC),
        "deadline": None,
        "request_id": None,
    }
    return JobMessage(**(values | fields))


def by_uri(s3: Any, settings: Settings, model: ModelVersion) -> JobMessage:
    """A job whose inputs the worker reads from S3 (written here, under acme's prefix)."""
    uri = f"s3://{settings.s3_bucket}/tenants/acme/{uuid.uuid4().hex}.json"
    put_bytes(s3, uri, json.dumps(random_inputs(1, seed=17)[0]).encode())
    return forged(model, inputs=None, input_uri=uri)


def records_on(bootstrap: str, topic: str) -> list[Any]:
    """Every record on `topic`, read from the beginning to its end, without a group."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        found: list[Any] = []
        while any(consumer.position(tp) < ends[tp] for tp in parts):
            for records in consumer.poll(timeout_ms=1000).values():
                found.extend(records)
        return found
    finally:
        consumer.close()


def row(engine: Engine, job_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(text("SELECT * FROM jobs WHERE id = :id"), {"id": job_id}).one()


def refuse_job_messages(bootstrap: str, topic: str, refused: bool = True) -> None:
    """Make `topic` refuse records as large as a job message (or take them again)."""
    size = "64" if refused else str(1024 * 1024)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        resource = ConfigResource(
            ConfigResourceType.TOPIC, topic, configs={"max.message.bytes": size}
        )
        admin.alter_configs([resource])
    finally:
        admin.close()


def test_a_retry_kafka_refuses_rewinds_the_batch_and_the_worker_goes_on(
    publish_model, start_worker, engine: Engine, settings: Settings, kafka: str
) -> None:
    model = publish_model()
    topic = job_topic(model.name)
    ensure_topics(settings, [topic, dlq_topic(topic)], settings.topic_partitions, 1)
    # Inputs the model cannot run: each attempt fails, and may be tried again.
    bad = enqueue_forged(engine, settings, forged(model, inputs={"transaction_amount": 1.0}))
    good = enqueue_forged(engine, settings, forged(model))
    refuse_job_messages(kafka, topic)  # every retry sent back onto the topic is refused

    worker = start_worker(model.name)
    eventually(lambda: row(engine, bad).status == "failed", "the bad job to fail", timeout=90)

    failed = row(engine, bad)
    assert failed.attempts == settings.max_attempts, "each refused retry came back as a redelivery"
    assert failed.error["type"] == "inference_error"
    assert row(engine, good).status == "succeeded"
    assert terminal_writes(engine, [bad, good]) == {bad: 1, good: 1}
    assert worker.log().count("rewinding and retrying") == settings.max_attempts - 1
    assert worker.proc.poll() is None, worker.log()
    worker.wait_ready()
    eventually(lambda: len(records_on(kafka, dlq_topic(topic))) == 1, "the dead-letter copy")
    [copy] = records_on(kafka, dlq_topic(topic))
    assert copy.key == bad.encode()


def test_a_dead_letter_copy_kafka_refuses_is_sent_once_kafka_takes_it(
    publish_model, start_worker, engine: Engine, settings: Settings, kafka: str
) -> None:
    model = publish_model()
    topic = job_topic(model.name)
    ensure_topics(settings, [topic, dlq_topic(topic)], settings.topic_partitions, 1)
    refuse_job_messages(kafka, dlq_topic(topic))
    bad = enqueue_forged(engine, settings, forged(model, inputs={"transaction_amount": 1.0}))

    worker = start_worker(model.name, INFERFLEET_MAX_ATTEMPTS="1")
    eventually(lambda: row(engine, bad).status == "failed", "the bad job to fail")
    eventually(lambda: "rewinding and retrying" in worker.log(), "the copy to be refused")
    assert records_on(kafka, dlq_topic(topic)) == []
    refuse_job_messages(kafka, dlq_topic(topic), refused=False)

    eventually(lambda: records_on(kafka, dlq_topic(topic)), "the owed copy to be sent")
    eventually(lambda: "the services are back" in worker.log(), "the loop to go on")
    [copy] = records_on(kafka, dlq_topic(topic))
    assert copy.key == bad.encode()
    assert terminal_writes(engine, [bad]) == {bad: 1}
    assert worker.proc.poll() is None, worker.log()


def test_an_outage_mid_batch_costs_no_attempt_and_readiness_comes_back(
    publish_model, start_worker, engine: Engine, settings: Settings, s3: Any
) -> None:
    model = publish_model()
    endpoint = urlparse(settings.s3_endpoint_url or "")
    with forwarding(endpoint.hostname or "", endpoint.port or 80) as s3_link:
        worker = start_worker(
            model.name, INFERFLEET_S3_ENDPOINT_URL=f"http://127.0.0.1:{s3_link.port}"
        )
        worker.wait_ready()
        s3_link.cut()  # S3 goes away for this worker only
        job_id = enqueue_forged(engine, settings, by_uri(s3, settings, model))

        eventually(lambda: "rewinding and retrying" in worker.log(), "the batch to fail")
        eventually(lambda: worker.readyz().status_code == 503, "readiness to go")
        assert "waiting for a service" in worker.readyz().json()["reason"]
        eventually(lambda: "gave back 1 job" in worker.log(), "the claim to be given back")
        s3_link.restore()

        eventually(lambda: row(engine, job_id).status == "succeeded", "the job to run")
        assert row(engine, job_id).attempts == 1, "the outage counted no attempt"
        assert terminal_writes(engine, [job_id]) == {job_id: 1}
        eventually(lambda: worker.readyz().status_code == 200, "readiness to come back")
        assert worker.proc.poll() is None, worker.log()


def test_a_zombie_worker_writes_nothing_of_a_job_another_worker_took(
    publish_model, start_worker, engine: Engine, settings: Settings, s3: Any
) -> None:
    model = publish_model()
    group = f"workers-{model.name}"
    endpoint = urlparse(settings.s3_endpoint_url or "")
    with forwarding(endpoint.hostname or "", endpoint.port or 80) as s3_link:
        zombie = start_worker(
            model.name,
            group=group,
            INFERFLEET_S3_ENDPOINT_URL=f"http://127.0.0.1:{s3_link.port}",
            INFERFLEET_MAX_POLL_INTERVAL_MS="3000",
        )
        zombie.wait_ready()
        s3_link.hold()  # S3 stops answering it mid-read: it stalls past its poll interval
        job_id = enqueue_forged(engine, settings, by_uri(s3, settings, model))
        eventually(lambda: row(engine, job_id).status == "running", "the zombie's claim")
        held_by = row(engine, job_id).claim_token

        other = start_worker(model.name, group=group)
        eventually(lambda: row(engine, job_id).status == "succeeded", "the other worker's run")
        assert row(engine, job_id).claim_token != held_by
        s3_link.restore()  # the zombie wakes up and finishes its stale batch

        eventually(lambda: "no longer held by this worker" in zombie.log(), "the zombie's write")
        finished = row(engine, job_id)
        assert (finished.status, finished.attempts) == ("succeeded", 2)
        assert terminal_writes(engine, [job_id]) == {job_id: 1}
        assert zombie.proc.poll() is None, zombie.log()
        assert other.proc.poll() is None, other.log()


def enqueue_many(engine: Engine, bootstrap: str, found: list[JobMessage]) -> list[str]:
    """Write the jobs' queued rows, then produce their messages to `bootstrap`."""
    with engine.begin() as conn:
        conn.execute(
            jobs.insert(),
            [
                {
                    "id": j.job_id,
                    "tenant": j.tenant,
                    "model": j.model,
                    "version": j.version,
                    "status": "queued",
                    "lane": "interactive",
                    "inputs": j.inputs,
                }
                for j in found
            ],
        )
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for j in found:
        producer.send(job_topic(j.model), key=j.job_id.encode(), value=messages.encode(j))
    producer.flush()
    producer.close()
    return [j.job_id for j in found]


def test_a_broker_outage_is_waited_for_and_no_job_is_lost_doubled_or_charged(
    publish_model, start_worker, engine: Engine, settings: Settings, own_broker: OwnBroker
) -> None:
    model = publish_model()
    topics = model_topics(model.name)
    own = settings.model_copy(update={"kafka_bootstrap": own_broker.bootstrap})
    ensure_topics(own, topics, settings.topic_partitions, 1)
    inputs = random_inputs(3000, seed=18)
    ids = enqueue_many(engine, own_broker.bootstrap, [forged(model, inputs=row) for row in inputs])
    worker = start_worker(
        model.name,
        INFERFLEET_KAFKA_BOOTSTRAP=own_broker.bootstrap,
        INFERFLEET_POLL_MAX_RECORDS="20",
    )
    eventually(
        lambda: statuses(engine, model.name).get("succeeded", 0) >= 200,
        "the worker to finish some jobs",
        timeout=90,
    )
    own_broker.kill()

    eventually(lambda: "rewinding and retrying" in worker.log(), "the worker to meet the outage")
    eventually(lambda: worker.readyz().status_code == 503, "readiness to go")
    assert "waiting for a service" in worker.readyz().json()["reason"]
    assert statuses(engine, model.name).get("succeeded", 0) < len(ids), "the outage came late"
    own_broker.start()

    eventually(
        lambda: statuses(engine, model.name) == {"succeeded": len(ids)},
        "every job to succeed once the broker is back",
        timeout=120,
    )
    assert worker.proc.poll() is None, worker.log()
    eventually(lambda: worker.readyz().status_code == 200, "readiness to come back")
    writes = terminal_writes(engine, ids)
    assert len(writes) == len(ids)
    assert set(writes.values()) == {1}, "a job was written into a terminal state twice"
    assert {r.attempts for r in job_rows(engine, model.name)} == {1}, "the outage was charged"
