"""The API through a broker outage of its own broker (the shared one is never touched):
while Kafka is away every submit is answered 503 with `Retry-After`, never 500, and none
of those jobs ever runs (their rows are failed before the answer, so the sweep has
nothing to produce); readiness says so; once the broker is back, submits are accepted
again without a restart."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from inferfleet.settings import Settings
from tests.integration.conftest import (
    PublishModel,
    bearer,
    eventually,
    job_rows,
    make_key,
    serve_app,
)
from tests.integration.ownbroker import OwnBroker
from tests.integration.test_jobs import random_inputs


@pytest.fixture
def outage_api(settings: Settings, engine: Engine, own_broker: OwnBroker) -> Iterator[str]:
    """The API on the test's own broker, answering within a few seconds when it is away."""
    yield from serve_app(
        settings.model_copy(
            update={
                "kafka_bootstrap": own_broker.bootstrap,
                "produce_timeout_s": 3.0,
                "readiness_interval_s": 0.5,
            }
        )
    )


def test_a_broker_outage_answers_503_and_queues_nothing_until_it_is_back(
    outage_api: str,
    own_broker: OwnBroker,
    publish_model: PublishModel,
    engine: Engine,
) -> None:
    model = publish_model()
    key = make_key(engine, f"t-{uuid.uuid4().hex[:10]}", "jobs")
    client = httpx.Client(base_url=outage_api, headers=bearer(key), timeout=60)
    inputs = random_inputs(12, 41)

    def submit(i: int) -> httpx.Response:
        return client.post("/v1/jobs", json={"model": model.name, "inputs": inputs[i]})

    def bulk() -> httpx.Response:
        items = [{"inputs": x} for x in inputs[8:12]]
        return client.post("/v1/jobs/bulk", json={"model": model.name, "items": items})

    try:
        assert submit(0).status_code == 202  # the producer is made and warm
        own_broker.kill()

        with ThreadPoolExecutor(max_workers=6) as pool:
            answers: list[Any] = [*pool.map(submit, range(1, 8)), bulk()]
        assert [a.status_code for a in answers] == [503] * len(answers), [a.text for a in answers]
        assert all(a.headers["retry-after"].isdigit() for a in answers)
        assert all(a.headers["content-type"] == "application/problem+json" for a in answers)
        eventually(
            lambda: httpx.get(f"{outage_api}/readyz", timeout=5).status_code == 503,
            "readiness to say Kafka is away",
            30,
        )
        rows = job_rows(engine, model.name)
        refused = [r for r in rows if r.status != "queued"]
        # Every job of a refused request is failed: none is left for the sweep to produce.
        assert {r.status for r in refused} <= {"failed"}
        assert [r.status for r in rows].count("queued") == 1  # the first, accepted one

        own_broker.start()
        eventually(
            lambda: httpx.get(f"{outage_api}/readyz", timeout=5).status_code == 200,
            "readiness to come back",
            60,
        )
        back = eventually(lambda: submit(0) if submit(0).status_code == 202 else None, "a 202", 60)
        assert back.status_code == 202
    finally:
        client.close()
