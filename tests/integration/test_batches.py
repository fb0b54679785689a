"""Batches end to end: S3 file → API → the scheduler's ingest (a real Celery worker with
embedded beat) → Kafka → a real worker → the results writer → S3 and a signed webhook.

Expected outputs come from ONNX Runtime run here on the package's graph, with feeds
built in this file; signatures are checked with the `standardwebhooks` library.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from kafka import KafkaConsumer, TopicPartition
from sqlalchemy import Engine, func, text
from standardwebhooks.webhooks import Webhook

from inferfleet.clients.objectstore import split_uri
from inferfleet.clients.topics import job_topic
from inferfleet.ids import batch_job_id, new_batch_id
from inferfleet.settings import Settings
from inferfleet.tables import batches, jobs
from inferfleet.tenants import keys
from tests.integration.conftest import (
    bearer,
    eventually,
    free_port,
    serve_app,
    start_scheduler,
)
from tests.integration.receiver import Receiver

pytestmark = pytest.mark.integration

CATEGORIES = ["electronics", "fashion", "gaming", "gift_cards", "grocery", "travel"]
NUMBERS = ("transaction_amount", "user_account_age_days", "hour_of_day")
FINISHED = ("completed", "failed", "cancelled")


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory: pytest.TempPathFactory, settings: Settings) -> Iterator[Path]:
    """`python -m scheduler worker -B`: ingest, results writer and webhook dispatch."""
    folder = tmp_path_factory.mktemp("batch-scheduler")
    env = {
        "INFERFLEET_REDIS_URL": "redis://127.0.0.1:6379/11",
        "INFERFLEET_TOPIC_PARTITIONS": str(settings.topic_partitions),
        "INFERFLEET_WEBHOOK_ALLOWLIST": "127.0.0.1",
        "INFERFLEET_DISPATCH_INTERVAL_S": "0.2",
        "INFERFLEET_WEBHOOK_BACKOFF_BASE_S": "0.2",
        "INFERFLEET_WEBHOOK_BACKOFF_MAX_S": "0.8",
        "INFERFLEET_BATCH_POLL_S": "0.2",
        "INFERFLEET_BATCH_LEASE_S": "4",
        "INFERFLEET_BATCH_CHUNK_ROWS": "2000",
    }
    running = start_scheduler(folder, "scheduler", env)
    try:
        yield running.log_path
    finally:
        running.stop()


@pytest.fixture(scope="module")
def batch_api(settings: Settings, engine: Engine, kafka: str, s3: Any) -> Iterator[str]:
    """The API with the receiver's address allowlisted as a webhook target."""
    yield from serve_app(settings.model_copy(update={"webhook_allowlist": ["127.0.0.1"]}))


class Tenant:
    """A tenant of one test: its API client, webhook secret and S3 prefix."""

    def __init__(self, engine: Engine, api_url: str, s3: Any, settings: Settings) -> None:
        self.name = f"bat-{os.urandom(4).hex()}"
        with engine.begin() as conn:
            made = keys.create_key(conn, self.name, "jobs")
        self.secret = made.webhook_secret
        self.client = httpx.Client(base_url=api_url, headers=bearer(made.key), timeout=60)
        self.s3 = s3
        self.prefix = f"s3://{settings.s3_bucket}/tenants/{self.name}/"

    def put(self, name: str, data: bytes) -> str:
        uri = self.prefix + name
        bucket, key = split_uri(uri)
        self.s3.put_object(Bucket=bucket, Key=key, Body=data)
        return uri

    def submit(self, model: str, input_uri: str, **extra: Any) -> str:
        body = {"model": model, "input_uri": input_uri, "output_uri": self.prefix + "out/"}
        r = self.client.post("/v1/batches", json={**body, **extra})
        assert r.status_code == 202, r.text
        assert r.json() == {"id": r.json()["id"], "status": "validating"}
        assert r.headers["location"] == f"/v1/batches/{r.json()['id']}"
        return str(r.json()["id"])

    def batch(self, batch_id: str) -> dict[str, Any]:
        r = self.client.get(f"/v1/batches/{batch_id}")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def wait(self, batch_id: str, *statuses: str, timeout: float = 120) -> dict[str, Any]:
        found: dict[str, Any] = {}

        def done() -> bool:
            found.update(self.batch(batch_id))
            return found["status"] in statuses

        eventually(done, f"batch {batch_id} to be {' or '.join(statuses)}", timeout)
        return found

    def results(self, batch: dict[str, Any]) -> list[dict[str, Any]]:
        """The results file, read through its presigned URL."""
        bucket, key = split_uri(batch["output_uri"])
        assert f"/{bucket}/{key}?" in batch["output_url"]
        r = httpx.get(batch["output_url"], timeout=60)
        assert r.status_code == 200, r.text
        return [json.loads(line) for line in r.text.splitlines()]


@pytest.fixture
def tenant(engine: Engine, batch_api: str, s3: Any, settings: Settings) -> Iterator[Tenant]:
    t = Tenant(engine, batch_api, s3, settings)
    yield t
    t.client.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(free_port())
    r.start()
    yield r
    r.stop()


def rows(count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {
            "transaction_amount": round(rng.lognormvariate(4.0, 1.2), 2),
            "merchant_category": rng.choice(CATEGORIES),
            "user_account_age_days": rng.randrange(0, 3650),
            "hour_of_day": rng.randrange(0, 24),
        }
        for _ in range(count)
    ]


def jsonl(lines: list[Any]) -> bytes:
    return b"".join(
        (line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n" for line in lines
    )


def model_outputs(package: Path, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the graph gives for each instance: one [N, 1] feed per request field."""
    session = ort.InferenceSession(str(package / "model.onnx"), providers=["CPUExecutionProvider"])
    feeds = {
        name: np.array(
            [[row[name]] for row in inputs],
            dtype=np.float32 if name in NUMBERS else object,
        )
        for name in (*NUMBERS, "merchant_category")
    }
    labels, probabilities = session.run(["label", "probabilities"], feeds)
    return [
        {"label": int(label), "probabilities": p.tolist()}
        for label, p in zip(labels, probabilities, strict=True)
    ]


def batch_jobs(engine: Engine, batch_id: str) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                text("SELECT * FROM jobs WHERE batch_id = :b ORDER BY line"), {"b": batch_id}
            )
        )


def records_on(settings: Settings, topic: str) -> int:
    """How many records `topic` holds (0 when it does not exist)."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
        return sum(ends.values())
    finally:
        consumer.close()


def test_a_batch_of_10000_lines_completes_in_order_with_the_models_outputs(
    scheduler: Path,
    tenant: Tenant,
    receiver: Receiver,
    engine: Engine,
    publish_model,
    start_worker,
    fraud_package: Path,
    settings: Settings,
) -> None:
    model = publish_model()
    start_worker(model.name).wait_ready()
    inputs = rows(10_000, seed=6)
    uri = tenant.put(
        "in/day.jsonl",
        jsonl([{"custom_id": f"row-{i}", "inputs": x} for i, x in enumerate(inputs, 1)]),
    )
    batch_id = tenant.submit(model.name, uri, webhook={"url": receiver.url})

    batch = tenant.wait(batch_id, *FINISHED, timeout=300)
    assert batch["status"] == "completed", batch
    assert batch["version"] == str(model.version)
    assert batch["counts"] == {
        "total": 10_000,
        "succeeded": 10_000,
        "failed": 0,
        "cancelled": 0,
        "expired": 0,
    }
    assert batch["invalid_lines"] == []
    assert batch["output_uri"] == tenant.prefix + "out/results.jsonl"
    assert batch["completed_at"] is not None

    results = tenant.results(batch)
    made = batch_jobs(engine, batch_id)
    assert [r["custom_id"] for r in results] == [f"row-{i}" for i in range(1, 10_001)]
    assert [r["job_id"] for r in results] == [j.id for j in made]
    assert [j.line for j in made] == list(range(1, 10_001))
    assert {(j.lane, j.tenant, j.status) for j in made} == {("batch", tenant.name, "succeeded")}
    assert all(j.produced_at is not None for j in made)
    assert {r["status"] for r in results} == {"succeeded"}
    expected = model_outputs(fraud_package, inputs)
    for result, want in zip(results, expected, strict=True):
        assert result["outputs"]["label"] == want["label"], result
        assert result["outputs"]["probabilities"] == pytest.approx(want["probabilities"], abs=1e-5)
    assert records_on(settings, job_topic(model.name, "batch")) == 10_000

    # batch.completed, signed, carrying the batch as GET returns it.
    eventually(lambda: receiver.snapshot(), "the batch.completed webhook")
    (request,) = receiver.snapshot()
    payload = Webhook(tenant.secret).verify(request.body, request.headers)
    assert payload["type"] == "batch.completed"
    assert request.webhook_id == "msg_" + batch_id.removeprefix("bat_")
    sent, now = dict(payload["data"]), tenant.batch(batch_id)
    assert sent.pop("output_url").startswith("http")
    assert now.pop("output_url").startswith("http")
    assert sent == now


BAD_FILE = [
    {"custom_id": "a", "inputs": rows(1, seed=1)[0]},
    {"custom_id": "b", "inputs": {**rows(1, seed=2)[0], "hour_of_day": 25}},
    b"{this is not json",
    {"custom_id": "d", "inputs": rows(1, seed=4)[0]},
    {"inputs": rows(1, seed=5)[0]},
    {"custom_id": "f", "inputs": rows(1, seed=6)[0]},
]


def test_bad_lines_are_reported_by_number_and_the_batch_fails_with_nothing_enqueued(
    scheduler: Path,
    tenant: Tenant,
    receiver: Receiver,
    engine: Engine,
    settings: Settings,
    publish_model,
) -> None:
    model = publish_model()
    uri = tenant.put("in/bad.jsonl", jsonl(BAD_FILE))
    batch_id = tenant.submit(model.name, uri, webhook={"url": receiver.url})

    batch = tenant.wait(batch_id, *FINISHED)
    assert batch["status"] == "failed"
    assert batch["error"]["type"] == "invalid_lines"
    assert "3 of 6 lines are invalid" in batch["error"]["message"]
    assert batch["counts"]["total"] == 6
    assert batch["output_uri"] is None
    invalid = {e["line"]: e for e in batch["invalid_lines"]}
    assert sorted(invalid) == [2, 3, 5]
    assert invalid[2]["custom_id"] == "b"
    assert invalid[2]["errors"] == [
        {
            "loc": ["inputs", "hour_of_day"],
            "msg": "25 is greater than the maximum of 23",
            "type": "maximum",
            "input": 25,
        }
    ]
    assert invalid[3]["errors"][0]["type"] == "json_invalid"
    assert invalid[5]["errors"][0]["loc"] == ["custom_id"]
    assert batch_jobs(engine, batch_id) == []
    assert records_on(settings, job_topic(model.name, "batch")) == 0

    eventually(lambda: receiver.snapshot(), "the batch.failed webhook")
    payload = Webhook(tenant.secret).verify(
        receiver.snapshot()[0].body, receiver.snapshot()[0].headers
    )
    assert payload["type"] == "batch.failed"
    assert payload["data"] == tenant.batch(batch_id)


def test_skip_invalid_runs_the_good_lines_and_reports_the_bad_ones_in_the_results(
    scheduler: Path, tenant: Tenant, engine: Engine, publish_model, start_worker
) -> None:
    model = publish_model()
    start_worker(model.name).wait_ready()
    good = rows(3, seed=9)
    header = "custom_id,transaction_amount,merchant_category,user_account_age_days,hour_of_day"
    csv = "\n".join(
        [
            header,
            "r1,{transaction_amount},{merchant_category},{user_account_age_days},{hour_of_day}".format(
                **good[0]
            ),
            "r2,12.5,electronics,100,99",
            "r3,{transaction_amount},{merchant_category},{user_account_age_days},{hour_of_day}".format(
                **good[1]
            ),
            "r4,lots,electronics,100,3",
            "r5,{transaction_amount},{merchant_category},{user_account_age_days},{hour_of_day}".format(
                **good[2]
            ),
            "r6,1.0,electronics",
        ]
    )
    uri = tenant.put("in/mixed.csv", csv.encode())
    batch_id = tenant.submit(model.name, uri, skip_invalid=True)

    batch = tenant.wait(batch_id, *FINISHED)
    assert batch["status"] == "completed", batch
    assert batch["counts"] == {
        "total": 6,
        "succeeded": 3,
        "failed": 0,
        "cancelled": 0,
        "expired": 0,
    }
    assert [e["line"] for e in batch["invalid_lines"]] == [2, 4, 6]
    results = tenant.results(batch)
    assert [(r["custom_id"], r["status"]) for r in results] == [
        ("r1", "succeeded"),
        ("r2", "invalid"),
        ("r3", "succeeded"),
        ("r4", "invalid"),
        ("r5", "succeeded"),
        ("r6", "invalid"),
    ]
    assert results[1]["job_id"] is None
    assert results[1]["error"]["errors"][0]["loc"] == ["inputs", "hour_of_day"]
    assert results[3]["error"]["errors"][0]["input"] == "lots"
    made = batch_jobs(engine, batch_id)
    assert [j.line for j in made] == [1, 3, 5]
    assert [r["job_id"] for r in results if r["job_id"]] == [j.id for j in made]


def test_a_line_nested_too_deeply_is_an_invalid_line_never_a_stuck_batch(
    scheduler: Path, tenant: Tenant, engine: Engine, publish_model
) -> None:
    model = publish_model()
    good = rows(20, seed=31)
    deep = b'{"custom_id": "deep", "inputs": {"hour_of_day": ' + b"[" * 100_000
    deep += b"]" * 100_000 + b"}}"
    lines: list[Any] = [{"custom_id": f"r{i}", "inputs": x} for i, x in enumerate(good[:10])]
    lines += [deep] + [{"custom_id": f"r{i}", "inputs": x} for i, x in enumerate(good[10:], 10)]
    uri = tenant.put("in/deep.jsonl", jsonl(lines))

    refused = tenant.wait(tenant.submit(model.name, uri), *FINISHED)
    assert refused["status"] == "failed"
    assert refused["error"]["type"] == "invalid_lines"
    [entry] = refused["invalid_lines"]
    assert entry["line"] == 11
    assert entry["errors"][0]["loc"] == ["inputs"]
    assert entry["errors"][0]["type"] == "too_deep"
    assert "deeper than 64 levels" in entry["errors"][0]["msg"]

    skipped = tenant.submit(model.name, uri, skip_invalid=True)
    batch = tenant.wait(skipped, "queued", "running", "completed")
    assert batch["counts"]["total"] == 21
    assert [e["line"] for e in batch["invalid_lines"]] == [11]
    assert len(batch_jobs(engine, skipped)) == 20


def test_a_parquet_file_is_read_by_its_columns(
    scheduler: Path,
    tenant: Tenant,
    engine: Engine,
    publish_model,
    start_worker,
    fraud_package: Path,
) -> None:
    model = publish_model()
    start_worker(model.name).wait_ready()
    inputs = rows(300, seed=12)
    table = pa.Table.from_pylist([{"custom_id": f"p{i}", **x} for i, x in enumerate(inputs)])
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=100)
    uri = tenant.put("in/rows.parquet", sink.getvalue().to_pybytes())
    batch_id = tenant.submit(model.name, uri)

    batch = tenant.wait(batch_id, *FINISHED)
    assert batch["status"] == "completed", batch
    results = tenant.results(batch)
    assert [r["custom_id"] for r in results] == [f"p{i}" for i in range(300)]
    expected = model_outputs(fraud_package, inputs)
    assert [r["outputs"]["label"] for r in results] == [w["label"] for w in expected]


def test_cancel_stops_the_queued_jobs_and_counts_move(
    scheduler: Path, tenant: Tenant, engine: Engine, publish_model
) -> None:
    model = publish_model()  # no worker: the jobs stay queued
    uri = tenant.put(
        "in/cancel.jsonl",
        jsonl([{"custom_id": str(i), "inputs": x} for i, x in enumerate(rows(300, 3))]),
    )
    batch_id = tenant.submit(model.name, uri)

    batch = tenant.wait(batch_id, "queued", "running")
    assert batch["counts"] == {
        "total": 300,
        "succeeded": 0,
        "failed": 0,
        "cancelled": 0,
        "expired": 0,
    }
    listed = tenant.client.get("/v1/jobs", params={"batch_id": batch_id, "limit": 500}).json()
    assert len(listed["items"]) == 300
    assert {j["status"] for j in listed["items"]} == {"queued"}
    early = tenant.client.post(f"/v1/batches/{batch_id}/resubmit-failed")
    assert early.status_code == 409
    assert early.json()["batch_status"] == "queued"

    r = tenant.client.post(f"/v1/batches/{batch_id}/cancel")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    assert r.json()["counts"]["cancelled"] == 300
    assert r.json()["completed_at"] is not None
    assert {j.status for j in batch_jobs(engine, batch_id)} == {"cancelled"}
    again = tenant.client.post(f"/v1/batches/{batch_id}/cancel")
    assert again.status_code == 409
    assert again.json()["batch_status"] == "cancelled"


def test_resubmit_failed_runs_the_failed_and_expired_lines_again(
    scheduler: Path, tenant: Tenant, engine: Engine, publish_model, start_worker
) -> None:
    model = publish_model()
    inputs = rows(20, seed=8)
    uri = tenant.put(
        "in/r.jsonl", jsonl([{"custom_id": f"c{i}", "inputs": x} for i, x in enumerate(inputs, 1)])
    )
    batch_id = tenant.submit(model.name, uri)
    tenant.wait(batch_id, "queued")
    with engine.begin() as conn:
        # Lines 4 and 9 pass their deadline before any worker takes them (the worker
        # expires them); line 13 fails as if its inference had failed for good.
        of_batch = jobs.c.batch_id == batch_id
        conn.execute(
            jobs.update()
            .where(of_batch, jobs.c.line.in_([4, 9]))
            .values(deadline=func.now() - timedelta(seconds=1))
        )
        conn.execute(
            jobs.update()
            .where(of_batch, jobs.c.line == 13)
            .values(
                status="failed",
                completed_at=func.now(),
                error={"type": "inference_failed", "message": "boom"},
            )
        )
    start_worker(model.name).wait_ready()

    batch = tenant.wait(batch_id, *FINISHED)
    assert batch["status"] == "completed"
    assert batch["counts"] == {
        "total": 20,
        "succeeded": 17,
        "failed": 1,
        "cancelled": 0,
        "expired": 2,
    }
    results = tenant.results(batch)
    assert {r["custom_id"]: r["status"] for r in results if r["status"] != "succeeded"} == {
        "c4": "expired",
        "c9": "expired",
        "c13": "failed",
    }
    assert results[12]["error"] == {"type": "inference_failed", "message": "boom"}

    r = tenant.client.post(f"/v1/batches/{batch_id}/resubmit-failed")
    assert r.status_code == 202, r.text
    again = r.json()
    assert again["status"] == "validating"
    assert again["resubmitted_from"] == batch_id
    assert again["input_uri"].startswith(tenant.prefix + "out/")
    redo = tenant.wait(again["id"], *FINISHED)
    assert redo["status"] == "completed", redo
    assert redo["counts"]["total"] == 3
    assert redo["counts"]["succeeded"] == 3
    redone = tenant.results(redo)
    assert [r["custom_id"] for r in redone] == ["c4", "c9", "c13"]
    assert {r["status"] for r in redone} == {"succeeded"}
    assert redo["output_uri"] != batch["output_uri"]
    nothing = tenant.client.post(f"/v1/batches/{again['id']}/resubmit-failed")
    assert nothing.status_code == 409


def test_an_ingest_that_crashed_is_taken_up_after_its_lease_without_duplicates(
    scheduler: Path, tenant: Tenant, engine: Engine, publish_model, start_worker
) -> None:
    """A batch left `validating` with some jobs inserted but never produced, and a lease
    that runs out: the next ingest inserts the rest, produces what was never produced,
    and every line has exactly one job."""
    model = publish_model()
    start_worker(model.name).wait_ready()
    inputs = rows(50, seed=10)
    uri = tenant.put(
        "in/crash.jsonl",
        jsonl([{"custom_id": f"k{i}", "inputs": x} for i, x in enumerate(inputs, 1)]),
    )
    batch_id = new_batch_id()
    with engine.begin() as conn:
        conn.execute(
            batches.insert().values(
                id=batch_id,
                tenant=tenant.name,
                model=model.name,
                version="production",
                status="validating",
                input_uri=uri,
                output_prefix=tenant.prefix + "crash/",
                lease_until=func.now() + timedelta(seconds=2),
            )
        )
        conn.execute(
            jobs.insert(),
            [
                {
                    "id": batch_job_id(batch_id, line),
                    "tenant": tenant.name,
                    "model": model.name,
                    "version": model.version,
                    "status": "queued",
                    "lane": "batch",
                    "inputs": inputs[line - 1],
                    "batch_id": batch_id,
                    "line": line,
                    "custom_id": f"k{line}",
                }
                for line in range(1, 21)
            ],
        )

    batch = tenant.wait(batch_id, *FINISHED)
    assert batch["status"] == "completed", batch
    made = batch_jobs(engine, batch_id)
    assert [j.line for j in made] == list(range(1, 51))
    assert {j.status for j in made} == {"succeeded"}
    assert [r["custom_id"] for r in tenant.results(batch)] == [f"k{i}" for i in range(1, 51)]


def test_batches_belong_to_their_tenant(
    scheduler: Path,
    tenant: Tenant,
    engine: Engine,
    batch_api: str,
    s3: Any,
    settings: Settings,
    admin_key: str,
    publish_model,
) -> None:
    model = publish_model()
    other = Tenant(engine, batch_api, s3, settings)
    missing = tenant.prefix + "in/missing.jsonl"
    ids = [tenant.submit(model.name, missing) for _ in range(3)]

    failed = tenant.wait(ids[0], *FINISHED)
    assert failed["status"] == "failed"
    assert failed["error"]["type"] == "input_unavailable"
    for path in (
        f"/v1/batches/{ids[0]}",
        f"/v1/batches/{ids[0]}/cancel",
        f"/v1/batches/{ids[0]}/resubmit-failed",
    ):
        method = "GET" if path.count("/") == 3 else "POST"
        r = other.client.request(method, path)
        assert r.status_code == 404, (path, r.text)
    assert other.client.get("/v1/batches").json() == {"items": [], "next_cursor": None}
    admin = httpx.get(f"{batch_api}/v1/batches/{ids[0]}", headers=bearer(admin_key))
    assert admin.status_code == 200
    assert admin.json()["id"] == ids[0]

    page = tenant.client.get("/v1/batches", params={"limit": 2}).json()
    assert [b["id"] for b in page["items"]] == [ids[2], ids[1]]
    rest = tenant.client.get(
        "/v1/batches", params={"limit": 2, "cursor": page["next_cursor"]}
    ).json()
    assert [b["id"] for b in rest["items"]] == [ids[0]]
    assert rest["next_cursor"] is None

    body = {"model": model.name, "input_uri": missing, "output_uri": tenant.prefix + "out/"}
    for field, uri in (
        ("input_uri", other.prefix + "x.jsonl"),
        ("output_uri", other.prefix + "out/"),
    ):
        r = tenant.client.post("/v1/batches", json={**body, field: uri})
        assert r.status_code == 403, r.text
        assert r.json()["errors"][0]["loc"] == [field]
    assert (
        tenant.client.post("/v1/batches", json={**body, "model": "no-such-model"}).status_code
        == 404
    )
    refused = tenant.client.post(
        "/v1/batches", json={**body, "webhook": {"url": "http://10.0.0.1/h"}}
    )
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["loc"] == ["webhook", "url"]
    other.client.close()


def test_a_batch_under_an_idempotency_key_is_made_once(
    tenant: Tenant, engine: Engine, publish_model
) -> None:
    model = publish_model()
    uri = tenant.put("in/keyed.jsonl", jsonl(rows(3, 91)))
    body = {"model": model.name, "input_uri": uri, "output_uri": tenant.prefix + "out/"}
    key = {"Idempotency-Key": "nightly-2026-12-04"}

    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(
            pool.map(lambda _: tenant.client.post("/v1/batches", json=body, headers=key), range(6))
        )

    assert sorted(a.status_code for a in answers) == [200] * 5 + [202]
    made = next(a.json()["id"] for a in answers if a.status_code == 202)
    assert {a.json()["id"] for a in answers} == {made}
    assert all("counts" in a.json() for a in answers if a.status_code == 200)  # the GET shape
    other = {**body, "skip_invalid": True}
    assert tenant.client.post("/v1/batches", json=other, headers=key).status_code == 409
    with engine.connect() as conn:
        count = conn.execute(
            text("SELECT count(*) FROM batches WHERE tenant = :t"), {"t": tenant.name}
        ).scalar_one()
    assert count == 1
