"""The path of a job over real HTTP, Kafka, a worker process and Postgres."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
from kafka import KafkaConsumer, TopicPartition
from sqlalchemy import Engine

from inferfleet.clients.topics import model_topics
from tests.builds import fraud_build
from tests.integration.conftest import eventually, job_rows, terminal_writes

CATEGORIES = fraud_build().CATEGORIES


def random_inputs(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {
            "transaction_amount": round(rng.uniform(0, 5000), 2),
            "merchant_category": rng.choice(CATEGORIES),
            "user_account_age_days": rng.randint(0, 3650),
            "hour_of_day": rng.randint(0, 23),
        }
        for _ in range(n)
    ]


def onnx_reference(package: Path, inputs: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities from ONNX Runtime run directly on the package's graph."""
    session = ort.InferenceSession(str(package / "model.onnx"), providers=["CPUExecutionProvider"])
    feeds = {
        "transaction_amount": np.array([[r["transaction_amount"]] for r in inputs], np.float32),
        "merchant_category": np.array([[r["merchant_category"]] for r in inputs], object),
        "user_account_age_days": np.array(
            [[r["user_account_age_days"]] for r in inputs], np.float32
        ),
        "hour_of_day": np.array([[r["hour_of_day"]] for r in inputs], np.float32),
    }
    labels, probabilities = session.run(["label", "probabilities"], feeds)
    return labels, probabilities


def topic_message_count(bootstrap: str, model: str) -> int:
    """Messages ever produced to `model`'s job topics."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in model_topics(model)
            for p in consumer.partitions_for_topic(topic) or ()
        ]
        return sum(consumer.end_offsets(partitions).values())
    finally:
        consumer.close()


def test_thousand_jobs_over_http_match_onnx_runtime(
    client: httpx.Client, publish_model, start_worker, engine: Engine, fraud_package: Path
) -> None:
    model = publish_model()
    worker = start_worker(model.name)
    worker.wait_ready()
    inputs = random_inputs(1000, seed=7)

    def submit_one(row: dict[str, Any]) -> str:
        r = client.post("/v1/jobs", json={"model": model.name, "inputs": row})
        assert r.status_code == 202, r.text
        body = r.json()
        assert body["status"] == "queued"
        assert body["version"] == "1"
        assert r.headers["location"] == f"/v1/jobs/{body['id']}"
        return str(body["id"])

    with ThreadPoolExecutor(max_workers=16) as pool:
        single_ids = list(pool.map(submit_one, inputs[:500]))
    bulk = client.post(
        "/v1/jobs/bulk",
        json={"model": model.name, "items": [{"inputs": row} for row in inputs[500:]]},
    )
    assert bulk.status_code == 202, bulk.text
    ids = single_ids + bulk.json()["ids"]
    assert len(set(ids)) == 1000

    # The client's view: long-poll one job to its end.
    first = client.get(f"/v1/jobs/{ids[0]}", params={"wait": 30}).json()
    assert first["status"] == "succeeded"
    assert set(first) == {
        "id",
        "status",
        "model",
        "version",
        "outputs",
        "output_uri",
        "output_url",
        "error",
        "attempts",
        "metadata",
        "batch_id",
        "created_at",
        "started_at",
        "completed_at",
    }

    eventually(
        lambda: (
            all(r.status == "succeeded" for r in job_rows(engine, model.name))
            and len(job_rows(engine, model.name)) == 1000
        ),
        "all 1,000 jobs to succeed",
        timeout=120,
    )
    by_id = {r.id: r for r in job_rows(engine, model.name)}
    labels, probabilities = onnx_reference(fraud_package, inputs)
    for i, job_id in enumerate(ids):
        row = by_id[job_id]
        assert row.version == 1
        assert row.attempts == 1
        assert row.started_at is not None
        assert row.completed_at >= row.started_at
        assert row.outputs["label"] == int(labels[i])
        np.testing.assert_allclose(
            row.outputs["probabilities"], probabilities[i], rtol=1e-5, atol=1e-6
        )
    assert set(terminal_writes(engine, ids).values()) == {1}


def test_invalid_inputs_answer_422_and_queue_nothing(
    client: httpx.Client, publish_model, engine: Engine, kafka: str
) -> None:
    model = publish_model()
    good = random_inputs(1, seed=1)[0]
    bad = {**good, "hour_of_day": 25, "merchant_category": "pets"}
    del bad["transaction_amount"]

    r = client.post("/v1/jobs", json={"model": model.name, "inputs": bad})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    errors = {tuple(e["loc"]): e for e in r.json()["errors"]}
    assert errors[("inputs", "hour_of_day")]["input"] == 25
    assert errors[("inputs", "merchant_category")]["input"] == "pets"
    assert errors[("inputs", "transaction_amount")]["type"] == "required"

    items = [{"inputs": row} for row in random_inputs(100, seed=2)]
    items[50]["inputs"]["hour_of_day"] = -1
    r = client.post("/v1/jobs/bulk", json={"model": model.name, "items": items})
    assert r.status_code == 422
    assert [e["loc"] for e in r.json()["errors"]] == [["items", 50, "inputs", "hour_of_day"]]
    assert r.json()["errors"][0]["input"] == -1

    r = client.post("/v1/jobs", json={"model": model.name, "inputs": good, "metadata": {"k": 1}})
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == ["metadata", "k"]

    assert job_rows(engine, model.name) == []
    assert topic_message_count(kafka, model.name) == 0


def test_unknown_model_or_version_is_404(client: httpx.Client, publish_model) -> None:
    model = publish_model()
    good = random_inputs(1, seed=3)[0]
    for body in (
        {"model": "no-such-model", "inputs": good},
        {"model": model.name, "version": "7", "inputs": good},
        {"model": model.name, "version": "canary", "inputs": good},
    ):
        r = client.post("/v1/jobs", json=body)
        assert r.status_code == 404, r.text
        assert r.json()["status"] == 404
    assert client.get("/v1/jobs/job_unknown").status_code == 404


def test_job_pinned_to_version_resolved_at_submit(
    client: httpx.Client, publish_model, engine: Engine
) -> None:
    model = publish_model()
    second = publish_model(name=model.name)  # v2 of the same name becomes production
    assert second.version == 2
    r = client.post(
        "/v1/jobs", json={"model": model.name, "version": "1", "inputs": random_inputs(1, 4)[0]}
    )
    assert r.status_code == 202
    assert r.json()["version"] == "1"
    r = client.post("/v1/jobs", json={"model": model.name, "inputs": random_inputs(1, 5)[0]})
    assert r.status_code == 202
    assert r.json()["version"] == "2"


def test_request_id_is_echoed_and_bodies_are_limited(client: httpx.Client, publish_model) -> None:
    model = publish_model()
    r = client.post(
        "/v1/jobs",
        json={"model": model.name, "inputs": random_inputs(1, 6)[0]},
        headers={"X-Request-ID": "client-req-1"},
    )
    assert r.headers["x-request-id"] == "client-req-1"
    huge = {"model": model.name, "inputs": {"pad": "x" * (1024 * 1024 + 1)}}
    r = client.post("/v1/jobs", json=huge)
    assert r.status_code == 413
    assert r.json()["request_id"] == r.headers["x-request-id"]


def test_listing_pages_through_the_callers_jobs_newest_first(
    client: httpx.Client, publish_model
) -> None:
    model = publish_model()
    first = client.post("/v1/jobs", json={"model": model.name, "inputs": random_inputs(1, 40)[0]})
    bulk = client.post(
        "/v1/jobs/bulk",
        json={"model": model.name, "items": [{"inputs": i} for i in random_inputs(6, 41)]},
    )
    submitted = {first.json()["id"], *bulk.json()["ids"]}

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"model": model.name, "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/v1/jobs", params=params).json()
        seen += [job["id"] for job in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert set(seen) == submitted
    assert len(seen) == len(submitted)
    assert seen == sorted(seen, reverse=True)
    assert seen[-1] == first.json()["id"]  # the oldest comes last

    queued = client.get("/v1/jobs", params={"model": model.name, "status": "queued"}).json()
    assert {job["status"] for job in queued["items"]} <= {"queued"}
    assert client.get("/v1/jobs", params={"model": "no-such-model"}).json() == {
        "items": [],
        "next_cursor": None,
    }
    assert client.get("/v1/jobs", params={"status": "done"}).status_code == 422
    assert client.get("/v1/jobs", params={"limit": 501}).status_code == 422


def test_cancel_stops_a_queued_job_and_refuses_a_finished_one(
    client: httpx.Client, publish_model, start_worker, engine: Engine
) -> None:
    model = publish_model()
    inputs = random_inputs(2, 60)
    waiting = client.post("/v1/jobs", json={"model": model.name, "inputs": inputs[0]}).json()

    cancelled = client.post(f"/v1/jobs/{waiting['id']}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    again = client.post(f"/v1/jobs/{waiting['id']}/cancel")
    assert again.status_code == 409
    assert again.json()["job_status"] == "cancelled"

    start_worker(model.name)
    done = client.post("/v1/jobs", json={"model": model.name, "inputs": inputs[1]}).json()
    assert client.get(f"/v1/jobs/{done['id']}", params={"wait": 30}).json()["status"] == (
        "succeeded"
    )
    # The cancelled job's message reaches the worker too; the job never runs.
    skipped = client.get(f"/v1/jobs/{waiting['id']}").json()
    assert (skipped["status"], skipped["attempts"], skipped["outputs"]) == ("cancelled", 0, None)
    late = client.post(f"/v1/jobs/{done['id']}/cancel")
    assert late.status_code == 409
    assert late.json()["job_status"] == "succeeded"
    assert client.post("/v1/jobs/job_nope/cancel").status_code == 404


def test_idempotency_key_returns_the_first_job_and_binds_only_accepted_submits(
    client: httpx.Client, publish_model, engine: Engine, api_url: str
) -> None:
    model = publish_model()
    inputs = random_inputs(2, 70)
    body = {"model": model.name, "inputs": inputs[0], "metadata": {"order": "A-17"}}
    key = {"Idempotency-Key": f"order-{model.name}"}

    first = client.post("/v1/jobs", json=body, headers=key)
    assert first.status_code == 202
    # Equal as parsed JSON: key order does not matter.
    reordered = {"metadata": body["metadata"], "inputs": inputs[0], "model": model.name}
    again = client.post("/v1/jobs", json=reordered, headers=key)
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert "attempts" in again.json()  # the GET shape
    other = client.post("/v1/jobs", json={**body, "inputs": inputs[1]}, headers=key)
    assert other.status_code == 409

    refused_key = {"Idempotency-Key": f"refused-{model.name}"}
    bad = {**body, "inputs": {**inputs[1], "hour_of_day": 99}}
    assert client.post("/v1/jobs", json=bad, headers=refused_key).status_code == 422
    assert client.post("/v1/jobs", json=body, headers=refused_key).status_code == 202
    assert len(job_rows(engine, model.name)) == 2


def test_concurrent_duplicates_create_one_job(
    client: httpx.Client, publish_model, engine: Engine
) -> None:
    model = publish_model()
    body = {"model": model.name, "inputs": random_inputs(1, 71)[0]}
    headers = {"Idempotency-Key": f"burst-{model.name}"}

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(
            pool.map(lambda _: client.post("/v1/jobs", json=body, headers=headers), range(16))
        )

    assert {a.status_code for a in answers} <= {200, 202}
    assert sum(a.status_code == 202 for a in answers) == 1
    assert len({a.json()["id"] for a in answers}) == 1
    assert len(job_rows(engine, model.name)) == 1


def test_a_bulk_submit_under_an_idempotency_key_makes_its_jobs_once(
    client: httpx.Client, publish_model, engine: Engine
) -> None:
    model = publish_model()
    items = [{"inputs": i} for i in random_inputs(3, 72)]
    body = {"model": model.name, "items": items}
    key = {"Idempotency-Key": f"bulk-{model.name}"}

    first = client.post("/v1/jobs/bulk", json=body, headers=key)
    assert first.status_code == 202
    again = client.post("/v1/jobs/bulk", json=body, headers=key)
    assert again.status_code == 200
    assert again.json() == first.json()  # the same ids, in item order
    assert (
        client.post("/v1/jobs/bulk", json={**body, "items": items[:2]}, headers=key).status_code
        == 409
    )
    single = {"model": model.name, "inputs": items[0]["inputs"]}
    assert client.post("/v1/jobs", json=single, headers=key).status_code == 409
    with ThreadPoolExecutor(max_workers=8) as pool:
        burst_key = {"Idempotency-Key": f"bulk-burst-{model.name}"}
        answers = list(
            pool.map(lambda _: client.post("/v1/jobs/bulk", json=body, headers=burst_key), range(8))
        )
    assert sorted(a.status_code for a in answers) == [200] * 7 + [202]
    assert len({tuple(a.json()["ids"]) for a in answers}) == 1
    assert len(job_rows(engine, model.name)) == 6


def test_a_webhook_into_an_internal_range_is_refused_at_submit(
    client: httpx.Client, publish_model
) -> None:
    model = publish_model()
    inputs = random_inputs(1, 80)[0]
    for url in ("http://127.0.0.1:9/hook", "http://169.254.169.254/latest", "ftp://x.example/"):
        r = client.post(
            "/v1/jobs", json={"model": model.name, "inputs": inputs, "webhook": {"url": url}}
        )
        assert r.status_code == 422, url
        errors = r.json()["errors"]
        assert errors[0]["loc"] == ["webhook", "url"]
    # A name that does not resolve now is accepted and checked again at delivery.
    r = client.post(
        "/v1/jobs",
        json={"model": model.name, "inputs": inputs, "webhook": {"url": "https://hooks.invalid/x"}},
    )
    assert r.status_code == 202
