"""The probes over real HTTP, Postgres and Kafka: `/healthz` and `/readyz` answer while
every request thread is busy, `/readyz` follows the background check, and admission
never measures a model name the registry does not know.
"""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import anyio.to_thread
import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import Engine

from api.app import create_app
from api.plumbing.admission import Admission
from api.plumbing.readiness import CHECK_TIMEOUT_S
from inferfleet.clients.topics import job_topic
from inferfleet.settings import Settings
from tests.integration.conftest import (
    PublishModel,
    bearer,
    eventually,
    free_port,
    make_key,
    serve_built,
)
from tests.integration.test_jobs import random_inputs


class Blocker:
    """Routes that hold request threads until released, and count the threads held."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.held = 0
        self._lock = threading.Lock()

    def install(self, app: FastAPI) -> None:
        @app.get("/test/hold")
        def hold() -> dict[str, bool]:  # a sync route: it takes a threadpool thread
            with self._lock:
                self.held += 1
            return {"released": self.release.wait(60)}

        @app.get("/test/threads")
        async def threads() -> dict[str, float]:
            return {"total": anyio.to_thread.current_default_thread_limiter().total_tokens}


@pytest.fixture
def blocked_app(
    settings: Settings, engine: Engine, kafka: str, s3: Any
) -> Iterator[tuple[str, Blocker]]:
    app = create_app(settings)
    blocker = Blocker()
    blocker.install(app)
    try:
        for url in serve_built(app):
            yield url, blocker
    finally:
        blocker.release.set()


def test_healthz_and_readyz_answer_while_every_request_thread_is_held(
    blocked_app: tuple[str, Blocker],
) -> None:
    url, blocker = blocked_app
    total = int(httpx.get(f"{url}/test/threads").json()["total"])
    with ThreadPoolExecutor(total) as pool:
        held = [pool.submit(httpx.get, f"{url}/test/hold", timeout=90) for _ in range(total)]
        eventually(lambda: blocker.held == total, f"{total} request threads held", 30)

        health = httpx.get(f"{url}/healthz", timeout=10)
        ready = httpx.get(f"{url}/readyz", timeout=10)

        blocker.release.set()
        assert all(f.result().json() == {"released": True} for f in held)

    assert health.status_code == 200
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"postgres": "ok", "kafka": "ok"}}


@pytest.fixture
def api_without_kafka(settings: Settings, engine: Engine, s3: Any) -> Iterator[str]:
    """The API checking readiness often, against a Kafka address where nothing listens."""
    dead = settings.model_copy(
        update={"kafka_bootstrap": f"127.0.0.1:{free_port()}", "readiness_interval_s": 0.2}
    )
    yield from serve_built(create_app(dead))


def test_readyz_answers_from_the_background_check_naming_what_failed(
    api_without_kafka: str,
) -> None:
    answers = [httpx.get(f"{api_without_kafka}/readyz", timeout=10) for _ in range(3)]

    for ready in answers:
        assert ready.status_code == 503
        assert ready.json()["status"] == "not_ready"
        assert ready.json()["checks"]["postgres"] == "ok"
        assert ready.json()["checks"]["kafka"].startswith("unavailable")
    assert httpx.get(f"{api_without_kafka}/healthz").status_code == 200


@pytest.fixture
def api_with_silent_postgres(settings: Settings, kafka: str, s3: Any) -> Iterator[str]:
    """The API whose database address accepts connections and never answers: a socket
    this test listens on and never reads."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    port = silent.getsockname()[1]
    url = f"postgresql+psycopg://inferfleet:inferfleet@127.0.0.1:{port}/inferfleet_test"
    try:
        yield from serve_built(
            create_app(
                settings.model_copy(
                    update={"database_url": SecretStr(url), "readiness_interval_s": 0.2}
                )
            )
        )
    finally:
        silent.close()  # the waiting connections are reset, and their threads end


def test_readyz_answers_at_once_while_postgres_hangs(api_with_silent_postgres: str) -> None:
    ready = httpx.get(f"{api_with_silent_postgres}/readyz", timeout=10)
    health = httpx.get(f"{api_with_silent_postgres}/healthz", timeout=10)

    assert ready.status_code == 503
    assert ready.json() == {
        "status": "not_ready",
        "checks": {
            "postgres": f"unavailable: no answer within {CHECK_TIMEOUT_S:g} s",
            "kafka": "ok",
        },
    }
    assert health.status_code == 200


class CountingMeasure:
    """The lag of every topic is 0; every topic asked about is recorded."""

    def __init__(self) -> None:
        self.topics: list[str] = []

    def __call__(self, topic: str) -> int:
        self.topics.append(topic)
        return 0


def test_admission_measures_only_models_the_registry_knows(
    settings: Settings, engine: Engine, kafka: str, s3: Any, publish_model: PublishModel
) -> None:
    app = create_app(settings.model_copy(update={"admission_max_lag": 10}))
    measure = CountingMeasure()
    model = publish_model()
    key = make_key(engine, f"t-{uuid.uuid4().hex[:10]}", "jobs")
    inputs = random_inputs(1, 61)[0]
    for url in serve_built(app):
        services = app.state.services
        app.state.services = replace(
            services, admission=Admission(services.settings, measure, services.metrics)
        )
        with httpx.Client(base_url=url, headers=bearer(key), timeout=30) as client:
            made_up = [
                client.post("/v1/jobs", json={"model": f"m-{uuid.uuid4().hex}", "inputs": inputs})
                for _ in range(20)
            ]
            bulk = client.post(
                "/v1/jobs/bulk",
                json={"model": f"m-{uuid.uuid4().hex}", "items": [{"inputs": inputs}]},
            )
            real = client.post("/v1/jobs", json={"model": model.name, "inputs": inputs})

    assert [r.status_code for r in made_up] == [404] * 20
    assert bulk.status_code == 404
    assert real.status_code == 202
    assert measure.topics == [job_topic(model.name, "interactive")]
