"""The submission path when Kafka does not answer: 503, and no job left `queued`."""

from __future__ import annotations

import platform
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import Engine

from inferfleet import __version__
from inferfleet.settings import Settings
from tests.integration.conftest import bearer, eventually, free_port, job_rows, serve_app
from tests.integration.test_jobs import random_inputs


@pytest.fixture
def api_without_kafka(settings: Settings, engine: Engine) -> Iterator[str]:
    """The API with the real database and a Kafka address where nothing listens."""
    dead = settings.model_copy(
        update={"kafka_bootstrap": f"127.0.0.1:{free_port()}", "produce_timeout_s": 1.0}
    )
    yield from serve_app(dead)


def test_kafka_unreachable_answers_503_and_leaves_no_queued_job(
    api_without_kafka: str, publish_model, engine: Engine, admin_key: str
) -> None:
    model = publish_model()
    with httpx.Client(base_url=api_without_kafka, timeout=30, headers=bearer(admin_key)) as client:
        r = client.post("/v1/jobs", json={"model": model.name, "inputs": random_inputs(1, 21)[0]})
        assert r.status_code == 503
        assert r.headers["retry-after"].isdigit()
        assert r.headers["content-type"] == "application/problem+json"
        assert "id" not in r.json()

        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["postgres"] == "ok"
        assert ready.json()["checks"]["kafka"] != "ok"
        assert client.get("/healthz").status_code == 200

    rows = job_rows(engine, model.name)
    assert [r.status for r in rows] == ["failed"]
    assert rows[0].error["type"] == "queue_unavailable"


def test_readyz_and_metrics_with_everything_up(client: httpx.Client, publish_model) -> None:
    model = publish_model()
    assert client.get("/readyz").json() == {
        "status": "ready",
        "checks": {"postgres": "ok", "kafka": "ok"},
    }
    client.post("/v1/jobs", json={"model": model.name, "inputs": random_inputs(1, 22)[0]})
    client.get("/v1/jobs/job_that_does_not_exist")
    metrics = client.get("/metrics").text
    assert f'inferfleet_api_jobs_submitted_total{{model="{model.name}"}} 1.0' in metrics
    build = f'python="{platform.python_version()}",version="{__version__}"'
    assert f"inferfleet_build_info{{{build}}} 1.0" in metrics

    def timed(method: str, route: str, status: int) -> bool:
        # A request is timed once its response is sent: the last one may land a moment later.
        line = (
            "inferfleet_api_request_duration_seconds_count"
            f'{{method="{method}",route="{route}",status="{status}"}}'
        )
        return line in client.get("/metrics").text

    eventually(lambda: timed("POST", "/v1/jobs", 202), "the submission timed by its route")
    eventually(lambda: timed("GET", "/v1/jobs/{job_id}", 404), "the 404 timed by its route")
