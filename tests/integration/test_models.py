"""Model packages end to end: the CLI, the admin routes, bad artifacts, alias moves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import onnx
import pytest
from kafka import KafkaConsumer
from onnx import TensorProto, helper
from sqlalchemy import Engine

from inferfleet.clients import objectstore
from inferfleet.clients.topics import dlq_topic, job_topic
from inferfleet.models.publish import cache_path, publish
from inferfleet.settings import Settings
from tests.integration.conftest import TEST_DATABASE_URL, eventually, job_rows
from tests.integration.test_jobs import random_inputs
from tests.integration.test_worker import group_members


def linear_package(folder: Path, *, opset: int = 17, schema_field: str = "x") -> Path:
    """A package made outside the project's scripts: score = 2·x + 1, built with onnx.helper."""
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "two"], ["twice"]),
            helper.make_node("Add", ["twice", "one"], ["score"]),
        ],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch", 1])],
        [
            helper.make_tensor("two", TensorProto.FLOAT, [], [2.0]),
            helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, folder / "model.onnx")
    manifest = {
        "name": "linear",
        "model_file": "model.onnx",
        "preprocessing": {"kind": "none"},
        "request_schema": {
            "type": "object",
            "additionalProperties": False,
            "required": [schema_field],
            "properties": {schema_field: {"type": "number"}},
        },
        "example": {schema_field: 1.5},
        "output_schema": {
            "type": "object",
            "properties": {"score": {"type": "array", "items": {"type": "number"}}},
        },
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the `inferfleet` CLI against the test database."""
    env = {
        **os.environ,
        "INFERFLEET_DATABASE_URL": TEST_DATABASE_URL,
        "INFERFLEET_MODEL_CACHE_DIR": str(settings.model_cache_dir),
        "INFERFLEET_TOPIC_PARTITIONS": str(settings.topic_partitions),
    }
    return subprocess.run(
        [sys.executable, "-m", "inferfleet.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def unique(prefix: str) -> str:
    return f"{prefix}-{os.urandom(4).hex()}"


def test_a_model_built_elsewhere_published_with_the_cli_serves_jobs(
    settings: Settings, tmp_path: Path, client: httpx.Client, start_worker, engine: Engine
) -> None:
    name = unique("linear")
    published = cli(settings, "models", "publish", str(linear_package(tmp_path)), "--name", name)
    assert published.returncode == 0, published.stderr
    assert json.loads(published.stdout)["version"] == "1"
    shown = json.loads(cli(settings, "models", "show", name).stdout)
    assert shown["aliases"] == {"production": "1"}
    assert set(shown["versions"][0]["files"]) == {"model.onnx"}

    worker = start_worker(name)
    worker.wait_ready()
    ids = []
    for x in (0.0, 1.5, -4.0):
        r = client.post("/v1/jobs", json={"model": name, "inputs": {"x": x}})
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    results = [client.get(f"/v1/jobs/{i}", params={"wait": 30}).json() for i in ids]
    assert [r["outputs"] for r in results] == [
        {"score": [1.0]},
        {"score": [4.0]},
        {"score": [-7.0]},
    ]
    r = client.post("/v1/jobs", json={"model": name, "inputs": {"x": "three"}})
    assert r.status_code == 422


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: linear_package(d, schema_field="y"), "graph input 'x' is not a required field"),
        (lambda d: linear_package(d, opset=99), "ONNX Runtime cannot load model.onnx"),
        (
            lambda d: (linear_package(d) / "model.onnx").write_bytes(b"not a graph") and d,
            "ONNX Runtime cannot load model.onnx",
        ),
        (
            lambda d: (linear_package(d) / "weights.pkl").write_bytes(b"\x80\x04") and d,
            "weights.pkl: pickled files are refused",
        ),
    ],
    ids=["schema-graph-mismatch", "unsupported-opset", "not-onnx", "pickle"],
)
def test_a_bad_package_is_refused_with_a_clear_error_and_registers_nothing(
    settings: Settings, tmp_path: Path, client: httpx.Client, make: Any, message: str
) -> None:
    folder = tmp_path / "pkg"
    make(folder)
    name = unique("bad")

    result = cli(settings, "models", "publish", str(folder), "--name", name)

    assert result.returncode == 2
    assert message in result.stderr
    assert client.get(f"/v1/models/{name}").status_code == 404


def test_admin_routes_list_show_register_and_move_aliases(
    client: httpx.Client, publish_model, s3: Any, settings: Settings, fraud_package: Path
) -> None:
    first = publish_model()
    names = [m["name"] for m in client.get("/v1/models").json()["items"]]
    assert first.name in names

    prefix = f"s3://{settings.s3_bucket}/uploads/{first.name}/pkg"
    for filename in ("manifest.json", "model.onnx"):
        objectstore.upload(s3, fraud_package / filename, f"{prefix}/{filename}")
    r = client.post(
        f"/v1/models/{first.name}/versions", json={"package_uri": prefix, "alias": "canary"}
    )
    assert r.status_code == 201, r.text
    assert r.json()["version"] == "2"
    assert r.json()["request_schema"] == first.request_schema

    shown = client.get(f"/v1/models/{first.name}").json()
    assert shown["aliases"] == {"canary": "2", "production": "1"}
    assert [v["version"] for v in shown["versions"]] == ["1", "2"]

    r = client.put(f"/v1/models/{first.name}/aliases/production", json={"version": "2"})
    assert r.json() == {"name": first.name, "alias": "production", "version": "2"}
    job = client.post("/v1/jobs", json={"model": first.name, "inputs": random_inputs(1, 31)[0]})
    assert job.json()["version"] == "2"

    assert (
        client.put(f"/v1/models/{first.name}/aliases/production", json={"version": "9"}).status_code
        == 404
    )
    missing = client.post(
        f"/v1/models/{first.name}/versions", json={"package_uri": f"{prefix}-nowhere"}
    )
    assert missing.status_code == 422
    assert "does not exist" in missing.json()["detail"]


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_a_worker_that_cannot_load_its_model_says_why_and_stays_out_of_the_group(
    publish_model, start_worker, s3: Any, settings: Settings, kafka: str, damage: str
) -> None:
    version = publish_model()
    bucket, key = objectstore.split_uri(version.artifact_uri)
    # The worker must fetch from S3: its own cache is empty, and so is the S3 object.
    cache_path(settings.model_cache_dir, version.sha256, "model.onnx").unlink()
    if damage == "missing":
        s3.delete_object(Bucket=bucket, Key=key)
        reason = "does not exist in the object store"
    else:
        s3.put_object(Bucket=bucket, Key=key, Body=b"truncated")
        reason = f"the registry expects {version.sha256}"
    worker = start_worker(version.name)

    eventually(lambda: "cannot load served models" in worker.log(), "a load attempt")
    body = worker.readyz().json()
    assert body["status"] == "not_ready"
    assert reason in body["reason"]
    assert group_members(kafka, worker.env["INFERFLEET_WORKER_GROUP"]) == 0
    assert not list((Path(worker.env["INFERFLEET_MODEL_CACHE_DIR"])).glob("*.onnx"))


def test_an_alias_move_under_load_loses_and_fails_no_job(
    client: httpx.Client, publish_model, start_worker, engine: Engine
) -> None:
    v1 = publish_model()
    worker = start_worker(v1.name, INFERFLEET_REGISTRY_POLL_S="0.5")
    worker.wait_ready()
    submitted: list[dict[str, Any]] = []
    stop = threading.Event()

    def submit_steadily() -> None:
        seed = 0
        while not stop.is_set():
            seed += 1
            r = client.post(
                "/v1/jobs", json={"model": v1.name, "inputs": random_inputs(1, seed)[0]}
            )
            assert r.status_code == 202, r.text
            submitted.append(r.json())
            time.sleep(0.005)

    load = threading.Thread(target=submit_steadily)
    load.start()
    try:
        eventually(lambda: len(submitted) >= 100, "jobs on v1")
        v2 = publish_model(name=v1.name)  # production moves to v2
        assert v2.version == 2
        eventually(lambda: any(j["version"] == "2" for j in submitted), "jobs on v2")
        eventually(lambda: sum(j["version"] == "2" for j in submitted) >= 100, "more on v2")
    finally:
        stop.set()
        load.join(timeout=30)

    eventually(
        lambda: (
            {r.status for r in job_rows(engine, v1.name)} == {"succeeded"}
            and len(job_rows(engine, v1.name)) == len(submitted)
        ),
        "every job to succeed",
        timeout=60,
    )
    rows = {r.id: r for r in job_rows(engine, v1.name)}
    assert all(rows[j["id"]].version == int(j["version"]) for j in submitted)
    assert "alias production moved from v1 to v2" in worker.log()
    loaded = {m["version"] for m in worker.readyz().json()["models"]}
    assert loaded == {"1", "2"}


def echo_package(folder: Path) -> Path:
    """A number-echo graph whose schema also lets words through: those rows fail."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["word"], ["echo"])],
        "echo",
        [helper.make_tensor_value_info("word", TensorProto.FLOAT, ["batch", 1])],
        [helper.make_tensor_value_info("echo", TensorProto.FLOAT, ["batch", 1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, folder / "model.onnx")
    manifest = {
        "name": "echo",
        "model_file": "model.onnx",
        "request_schema": {
            "type": "object",
            "required": ["word"],
            "properties": {"word": {"type": ["string", "number"]}},
        },
        "example": {"word": 1.5},
        "output_schema": {"type": "object", "properties": {"echo": {"type": "array"}}},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_a_failing_row_is_retried_then_failed_alone_and_dead_lettered(
    settings: Settings,
    engine: Engine,
    s3: Any,
    kafka: str,
    tmp_path: Path,
    client: httpx.Client,
    start_worker,
) -> None:
    version = publish(settings, engine, s3, echo_package(tmp_path), name=unique("echo"))
    worker = start_worker(version.name, INFERFLEET_MAX_ATTEMPTS="3")
    worker.wait_ready()
    words: list[Any] = [1.0, 2.5, "forty-two", 4.0]
    r = client.post(
        "/v1/jobs/bulk",
        json={"model": version.name, "items": [{"inputs": {"word": w}} for w in words]},
    )
    ids = r.json()["ids"]
    jobs = [client.get(f"/v1/jobs/{i}", params={"wait": 60}).json() for i in ids]

    assert [j["status"] for j in jobs] == ["succeeded", "succeeded", "failed", "succeeded"]
    assert jobs[0]["outputs"] == {"echo": [1.0]}
    assert jobs[2]["attempts"] == 3
    assert jobs[2]["error"]["type"] == "inference_error"
    consumer = KafkaConsumer(
        dlq_topic(job_topic(version.name)),
        bootstrap_servers=kafka,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,
    )
    dead = next(iter(consumer))
    consumer.close()
    assert dead.key == ids[2].encode()
    assert json.loads(dict(dead.headers)["inferfleet-error"])["type"] == "inference_error"
    assert json.loads(dead.value)["inputs"] == {"word": "forty-two"}
