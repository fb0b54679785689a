"""Inputs and outputs through S3, over real HTTP, moto S3, Kafka, a worker and Postgres:
presigned uploads, `input_uri`, tenant prefixes, the claim check, large outputs."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from kafka import KafkaConsumer
from sqlalchemy import Engine

from inferfleet.clients.topics import job_topic
from inferfleet.jobs.messages import JobMessage
from inferfleet.settings import Settings
from tests.integration.conftest import (
    bearer,
    enqueue_forged,
    free_port,
    job_rows,
    make_key,
    serve_app,
)
from tests.integration.test_jobs import onnx_reference, random_inputs, topic_message_count


@pytest.fixture
def tenant() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def tenant_client(api_url: str, engine: Engine, tenant: str) -> Iterator[httpx.Client]:
    """A client of the API with a `jobs` key of this test's own tenant."""
    key = make_key(engine, tenant, "jobs")
    with httpx.Client(base_url=api_url, timeout=30, headers=bearer(key)) as client:
        yield client


@pytest.fixture
def claim_check_api(settings: Settings, engine: Engine, kafka: str, s3: Any) -> Iterator[str]:
    """The API with a claim-check threshold below every fraud instance's size."""
    yield from serve_app(settings.model_copy(update={"claim_check_bytes": 64}))


@pytest.fixture
def api_without_s3(settings: Settings, engine: Engine, kafka: str) -> Iterator[str]:
    """The API with claim checks on and an S3 endpoint where nothing listens."""
    dead = {"claim_check_bytes": 64, "s3_endpoint_url": f"http://127.0.0.1:{free_port()}"}
    yield from serve_app(settings.model_copy(update=dead))


def upload(client: httpx.Client, data: bytes, filename: str = "in.json") -> str:
    """Upload `data` the way a client without S3 credentials does; returns its URI."""
    r = client.post("/v1/uploads", json={"filename": filename})
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {"uri", "upload_url"}
    put = httpx.put(body["upload_url"], content=data, timeout=30)
    assert put.status_code == 200, put.text
    return str(body["uri"])


def finished(client: httpx.Client, job_id: str) -> dict[str, Any]:
    job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}", params={"wait": 60}).json()
    assert job["status"] in ("succeeded", "failed"), job
    return job


def assert_outputs_match(outputs: dict[str, Any], package: Path, row: dict[str, Any]) -> None:
    labels, probabilities = onnx_reference(package, [row])
    assert outputs["label"] == int(labels[0])
    np.testing.assert_allclose(outputs["probabilities"], probabilities[0], rtol=1e-5, atol=1e-6)


def test_an_uploaded_input_runs_like_the_same_input_sent_inline(
    tenant_client: httpx.Client,
    tenant: str,
    publish_model,
    start_worker,
    engine: Engine,
    settings: Settings,
    fraud_package: Path,
) -> None:
    model = publish_model()
    start_worker(model.name)
    row = random_inputs(1, seed=90)[0]

    uri = upload(tenant_client, json.dumps(row).encode(), "row.json")
    assert uri.startswith(f"s3://{settings.s3_bucket}/tenants/{tenant}/uploads/")
    assert uri.endswith("/row.json")
    assert upload(tenant_client, b"{}", "row.json") != uri, "every upload names a new object"

    r = tenant_client.post("/v1/jobs", json={"model": model.name, "input_uri": uri})
    assert r.status_code == 202, r.text
    by_uri = finished(tenant_client, r.json()["id"])
    inline_id = tenant_client.post("/v1/jobs", json={"model": model.name, "inputs": row}).json()
    inline = finished(tenant_client, inline_id["id"])

    assert by_uri["status"] == inline["status"] == "succeeded"
    assert by_uri["outputs"] == inline["outputs"]
    assert_outputs_match(by_uri["outputs"], fraud_package, row)
    stored = {r.id: r for r in job_rows(engine, model.name)}[by_uri["id"]]
    assert (stored.input_uri, stored.inputs) == (uri, None)


def test_uris_outside_the_tenants_prefixes_are_403_and_queue_nothing(
    tenant_client: httpx.Client,
    tenant: str,
    publish_model,
    engine: Engine,
    kafka: str,
    settings: Settings,
) -> None:
    model = publish_model()
    bucket = settings.s3_bucket
    mine = f"s3://{bucket}/tenants/{tenant}"
    for uri in (
        f"s3://{bucket}/tenants/someone-else/in.json",
        f"{mine}/../someone-else/in.json",
        f"{mine}/%2e%2e/someone-else/in.json",
        f"{mine}/%252e%252e/someone-else/in.json",
        f"{mine}/..%5csomeone-else/in.json",
        f"{mine}-not/in.json",
        f"s3://{bucket}/claims/job_x.json",
        f"s3://{bucket}/results/{tenant}/job_x.json",
        f"s3://another-bucket/tenants/{tenant}/in.json",
    ):
        r = tenant_client.post("/v1/jobs", json={"model": model.name, "input_uri": uri})
        assert r.status_code == 403, (uri, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        [error] = r.json()["errors"]
        assert (error["loc"], error["input"]) == (["input_uri"], uri)
        assert uri in r.json()["detail"]

    for bad in ("https://example.com/in.json", f"{mine}/folder/"):
        r = tenant_client.post("/v1/jobs", json={"model": model.name, "input_uri": bad})
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["loc"] == ["input_uri"]
    assert job_rows(engine, model.name) == []
    assert topic_message_count(kafka, model.name) == 0

    for filename in ("../in.json", "a/b.json", ".hidden", ""):
        r = tenant_client.post("/v1/uploads", json={"filename": filename})
        assert r.status_code == 422, filename
        assert r.json()["errors"][0]["loc"] == ["filename"]
    anonymous = httpx.post(f"{tenant_client.base_url}/v1/uploads", json={"filename": "a.json"})
    assert anonymous.status_code == 401


def test_an_unusable_object_fails_only_its_own_job(
    tenant_client: httpx.Client,
    tenant: str,
    publish_model,
    start_worker,
    engine: Engine,
    settings: Settings,
    s3: Any,
) -> None:
    model = publish_model()
    rows = random_inputs(2, seed=91)
    prefix = f"tenants/{tenant}/{model.name}"
    objects = {
        "good": json.dumps(rows[0]).encode(),
        "not-json": b"transaction_amount=3",
        "a-list": json.dumps([rows[0]]).encode(),
        "invalid": json.dumps({**rows[0], "hour_of_day": 99}).encode(),
    }
    for name, data in objects.items():
        s3.put_object(Bucket=settings.s3_bucket, Key=f"{prefix}/{name}.json", Body=data)
    uri = {name: f"s3://{settings.s3_bucket}/{prefix}/{name}.json" for name in [*objects, "gone"]}

    # Everything is queued before the worker starts, so good and bad jobs share its polls.
    ids = {
        name: tenant_client.post("/v1/jobs", json={"model": model.name, "input_uri": u}).json()[
            "id"
        ]
        for name, u in uri.items()
    }
    ids["inline"] = tenant_client.post(
        "/v1/jobs", json={"model": model.name, "inputs": rows[1]}
    ).json()["id"]
    worker = start_worker(model.name)
    jobs = {name: finished(tenant_client, job_id) for name, job_id in ids.items()}

    assert {name: job["status"] for name, job in jobs.items()} == {
        "good": "succeeded",
        "inline": "succeeded",
        "not-json": "failed",
        "a-list": "failed",
        "invalid": "failed",
        "gone": "failed",
    }
    assert {name: job["error"]["type"] for name, job in jobs.items() if job["error"]} == {
        "not-json": "invalid_input",
        "a-list": "invalid_input",
        "invalid": "invalid_input",
        "gone": "input_unavailable",
    }
    for name in ("not-json", "a-list", "invalid", "gone"):
        assert uri[name] in jobs[name]["error"]["message"]
        assert jobs[name]["attempts"] == 1, "an input that cannot run is not retried"
    assert "hour_of_day" in jobs["invalid"]["error"]["message"]
    assert worker.proc.poll() is None


def test_inputs_above_the_claim_check_threshold_travel_through_s3(
    claim_check_api: str,
    tenant: str,
    publish_model,
    start_worker,
    engine: Engine,
    settings: Settings,
    s3: Any,
    fraud_package: Path,
) -> None:
    model = publish_model()
    rows = random_inputs(4, seed=92)
    key = make_key(engine, tenant, "jobs")
    with httpx.Client(base_url=claim_check_api, timeout=30, headers=bearer(key)) as client:
        single = client.post("/v1/jobs", json={"model": model.name, "inputs": rows[0]})
        assert single.status_code == 202, single.text
        bulk = client.post(
            "/v1/jobs/bulk",
            json={"model": model.name, "items": [{"inputs": r} for r in rows[1:]]},
        )
        assert bulk.status_code == 202, bulk.text
        ids = [single.json()["id"], *bulk.json()["ids"]]

        claims = {job_id: f"s3://{settings.s3_bucket}/claims/{job_id}.json" for job_id in ids}
        consumer = KafkaConsumer(
            job_topic(model.name),
            bootstrap_servers=settings.kafka_bootstrap,
            auto_offset_reset="earliest",
            consumer_timeout_ms=10_000,
        )
        messages = {}
        for record in consumer:
            messages[record.key.decode()] = json.loads(record.value)
            if len(messages) == len(ids):
                break
        consumer.close()
        for job_id, row in zip(ids, rows, strict=True):
            assert messages[job_id]["input_uri"] == claims[job_id]
            assert "inputs" not in messages[job_id]
            stored = s3.get_object(Bucket=settings.s3_bucket, Key=f"claims/{job_id}.json")
            assert json.loads(stored["Body"].read()) == row
        assert {r.id: (r.input_uri, r.inputs) for r in job_rows(engine, model.name)} == {
            job_id: (claims[job_id], None) for job_id in ids
        }

        start_worker(model.name)
        for job_id, row in zip(ids, rows, strict=True):
            job = finished(client, job_id)
            assert job["status"] == "succeeded", job
            assert (job["output_uri"], job["output_url"]) == (None, None)
            assert_outputs_match(job["outputs"], fraud_package, row)


def test_outputs_above_the_inline_limit_come_back_as_a_presigned_url(
    tenant_client: httpx.Client,
    tenant: str,
    publish_model,
    start_worker,
    engine: Engine,
    settings: Settings,
    s3: Any,
    fraud_package: Path,
) -> None:
    model = publish_model()
    start_worker(model.name, INFERFLEET_OUTPUT_INLINE_BYTES="16")
    row = random_inputs(1, seed=93)[0]
    body = {"model": model.name, "inputs": row}
    key = {"Idempotency-Key": f"large-{model.name}"}
    job_id = tenant_client.post("/v1/jobs", json=body, headers=key).json()["id"]

    job = finished(tenant_client, job_id)
    assert job["status"] == "succeeded", job
    assert job["outputs"] is None
    assert job["output_uri"] == f"s3://{settings.s3_bucket}/results/{tenant}/{job_id}.json"
    outputs = httpx.get(job["output_url"], timeout=30).json()
    assert_outputs_match(outputs, fraud_package, row)
    stored = s3.get_object(Bucket=settings.s3_bucket, Key=f"results/{tenant}/{job_id}.json")
    assert json.loads(stored["Body"].read()) == outputs

    # Every answer that returns the job returns a working URL beside its URI.
    listed = tenant_client.get("/v1/jobs", params={"model": model.name}).json()["items"]
    replay = tenant_client.post("/v1/jobs", json=body, headers=key)
    assert replay.status_code == 200
    for view in (listed[0], replay.json()):
        assert view["output_uri"] == job["output_uri"]
        assert httpx.get(view["output_url"], timeout=30).json() == outputs
    [stored_row] = job_rows(engine, model.name)
    assert (stored_row.output_uri, stored_row.outputs) == (job["output_uri"], None)


def test_a_claim_check_the_object_store_refuses_answers_503_and_queues_nothing(
    api_without_s3: str, api_url: str, tenant: str, publish_model, engine: Engine, kafka: str
) -> None:
    model = publish_model()
    key = make_key(engine, tenant, "jobs")
    idempotency = {"Idempotency-Key": f"s3-down-{model.name}"}
    with httpx.Client(base_url=api_without_s3, timeout=60, headers=bearer(key)) as client:
        body = {"model": model.name, "inputs": random_inputs(1, seed=94)[0]}
        r = client.post("/v1/jobs", json=body, headers=idempotency)
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"].isdigit()
        assert r.headers["content-type"] == "application/problem+json"
    assert job_rows(engine, model.name) == []
    assert topic_message_count(kafka, model.name) == 0
    # The refused submit did not bind its key: with S3 back, the same submit is accepted.
    with httpx.Client(base_url=api_url, timeout=30, headers=bearer(key)) as client:
        assert client.post("/v1/jobs", json=body, headers=idempotency).status_code == 202


def test_a_message_naming_another_tenants_object_fails_without_reading_it(
    tenant_client: httpx.Client,
    tenant: str,
    publish_model,
    start_worker,
    engine: Engine,
    settings: Settings,
    s3: Any,
) -> None:
    model = publish_model()
    row = random_inputs(1, seed=95)[0]
    victim = f"victim-{uuid.uuid4().hex[:8]}"
    secret = f"s3://{settings.s3_bucket}/tenants/{victim}/secret.json"
    s3.put_object(
        Bucket=settings.s3_bucket, Key=f"tenants/{victim}/secret.json", Body=json.dumps(row)
    )
    # A job row and a message the API never wrote: `tenant` names `victim`'s object.
    forged = JobMessage(
        job_id=f"job_forged{uuid.uuid4().hex[:12]}",
        tenant=tenant,
        model=model.name,
        version=model.version,
        inputs=None,
        input_uri=secret,
        enqueued_at=datetime.now(UTC),
        deadline=None,
        request_id=None,
    )
    enqueue_forged(engine, settings, forged)
    honest = tenant_client.post("/v1/jobs", json={"model": model.name, "inputs": row}).json()["id"]

    worker = start_worker(model.name)
    job = finished(tenant_client, forged.job_id)
    assert job["status"] == "failed"
    assert job["error"]["type"] == "forbidden_input"
    assert secret in job["error"]["message"]
    assert job["outputs"] is None
    assert finished(tenant_client, honest)["status"] == "succeeded"
    assert worker.proc.poll() is None
