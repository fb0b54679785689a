"""The path of a job through a Kafka broker that takes only SASL_SSL with a client
certificate: `scripts/secure-kafka.sh` starts it beside the stack's plaintext broker
(and this module stops it again if it was the one that started it).

The API and the worker connect with the settings the script prints; the worker gets
them the way a Kubernetes Secret written for KEDA gives them (`tls: enable`, `sasl:
scram_sha512`, the certificate and key as PEM text), the API as Kafka's own words and
file paths.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError
from pydantic import SecretStr
from sqlalchemy import Engine

from api.plumbing.queue import JobQueue
from inferfleet.clients.broker import Record
from inferfleet.clients.topics import ensure_topics, job_topic
from inferfleet.errors import QueueUnavailableError
from inferfleet.models.publish import publish
from inferfleet.settings import PREFIX, Settings, load_settings
from tests.integration.conftest import (
    ROOT,
    TEST_DATABASE_URL,
    bearer,
    job_rows,
    serve_app,
)

SCRIPT = ROOT / "scripts" / "secure-kafka.sh"
INPUTS = {
    "transaction_amount": 912.5,
    "merchant_category": "electronics",
    "user_account_age_days": 12,
    "hour_of_day": 3,
}


def run_script(command: str, timeout: float) -> subprocess.CompletedProcess[str]:
    # The script's Kafka check runs in this interpreter's environment.
    env = {"INFERFLEET_VENV": sys.prefix, **os.environ}
    return subprocess.run(
        [str(SCRIPT), command], env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def secure_env() -> Iterator[dict[str, str]]:
    """The INFERFLEET_KAFKA_* variables of a client of the secured broker."""
    started = run_script("status", 30).returncode != 0
    if started:
        up = run_script("up", 180)
        if up.returncode != 0:
            pytest.fail(f"scripts/secure-kafka.sh up failed:\n{up.stdout}\n{up.stderr}")
    try:
        lines = run_script("env", 10).stdout.splitlines()
        yield dict(line.split("=", 1) for line in lines if line)
    finally:
        if started:
            run_script("down", 60)


@pytest.fixture(scope="module")
def secure_settings(settings: Settings, secure_env: dict[str, str]) -> Settings:
    overrides: dict[str, Any] = {k[len(PREFIX) :].lower(): v for k, v in secure_env.items()}
    return load_settings(
        database_url=TEST_DATABASE_URL,
        model_cache_dir=settings.model_cache_dir,
        topic_partitions=settings.topic_partitions,
        rate_limit=settings.rate_limit,
        produce_timeout_s=5.0,
        **overrides,
    )


@contextmanager
def api(settings: Settings) -> Iterator[str]:
    served = serve_app(settings)
    try:
        yield next(served)
    finally:
        next(served, None)


def test_a_job_runs_through_a_broker_that_requires_sasl_ssl(
    secure_settings: Settings,
    secure_env: dict[str, str],
    settings: Settings,
    engine: Engine,
    s3: Any,
    fraud_package: Path,
    start_worker: Any,
    admin_key: str,
) -> None:
    # Publishing creates the model's topics, over SASL_SSL.
    model = publish(secure_settings, engine, s3, fraud_package, name=f"t-{uuid.uuid4().hex[:10]}")
    worker_env = {
        **secure_env,
        "INFERFLEET_KAFKA_SECURITY_PROTOCOL": "",
        "INFERFLEET_KAFKA_TLS": "enable",
        "INFERFLEET_KAFKA_SASL_MECHANISM": "scram_sha512",
        "INFERFLEET_KAFKA_SSL_CERT": Path(secure_env["INFERFLEET_KAFKA_SSL_CERT"]).read_text(),
        "INFERFLEET_KAFKA_SSL_KEY": Path(secure_env["INFERFLEET_KAFKA_SSL_KEY"]).read_text(),
    }
    worker = start_worker(model.name, **worker_env)
    worker.wait_ready(timeout=60)

    with (
        api(secure_settings) as url,
        httpx.Client(base_url=url, timeout=30, headers=bearer(admin_key)) as client,
    ):
        submitted = client.post("/v1/jobs", json={"model": model.name, "inputs": INPUTS})
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["id"]
        answer = client.get(f"/v1/jobs/{job_id}", params={"wait": 30}).json()

    assert answer["status"] == "succeeded", answer
    (row,) = job_rows(engine, model.name)
    assert row.id == job_id
    assert row.status == "succeeded"
    assert row.attempts == 1
    assert set(row.outputs) == {"label", "probabilities"}
    # The job went through the secured broker: the plaintext one never had its topic.
    plain = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        assert job_topic(model.name) not in plain.list_topics()
    finally:
        plain.close()


def test_a_wrong_password_fails_within_the_timeout_and_says_how_it_logged_in(
    secure_settings: Settings,
) -> None:
    wrong = secure_settings.model_copy(update={"kafka_sasl_password": SecretStr("not-it")})
    topic = f"test.secure.{uuid.uuid4().hex[:8]}"

    with pytest.raises(KafkaError):
        ensure_topics(wrong, [topic], 1, 1, timeout_ms=3000)

    queue = JobQueue(wrong)
    try:
        readiness = queue.ready()
        (refused,) = asyncio.run(queue.produce([Record(topic, b"k", b"v")]))
    finally:
        queue.close()
    assert readiness.startswith("unavailable: ")
    assert "SASL_SSL, SCRAM-SHA-512 as user 'inferfleet'" in readiness
    assert "refused login" in readiness
    assert isinstance(refused, QueueUnavailableError)
    assert "SCRAM-SHA-512 as user 'inferfleet'" in str(refused)
    assert "not-it" not in readiness + str(refused)
