"""The request checks over real HTTP, Redis and Kafka, in API.md's order: auth (401/403),
body size (413), rate limit (429), validation (422), availability (503); and admission
by the backlog of a model's topic.

Each test serves an API of its own with small limits; the session's API is not limited
in practice.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from inferfleet.clients.broker import Record, make_producer, send_all
from inferfleet.clients.topics import job_topic
from inferfleet.settings import Settings
from tests.integration.conftest import (
    PublishModel,
    bearer,
    eventually,
    free_port,
    job_rows,
    make_key,
    serve_app,
)
from tests.integration.test_jobs import random_inputs

MAX_BODY = 1024
RATE = 5  # per key per hour: no test runs long enough for a slot to free


def serve(settings: Settings, **update: Any) -> Iterator[str]:
    yield from serve_app(settings.model_copy(update=update))


@pytest.fixture
def limited_api(settings: Settings, engine: Engine, kafka: str, s3: Any) -> Iterator[str]:
    """The API with 1 KiB bodies (4 KiB bulk) and RATE requests per key per hour."""
    yield from serve(
        settings,
        max_body_bytes=MAX_BODY,
        max_bulk_body_bytes=4 * MAX_BODY,
        rate_limit=f"{RATE}/hour",
    )


def new_tenant() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def oversized(streamed: bool) -> Any:
    """A JSON body far past MAX_BODY: declared in Content-Length, or streamed in chunks."""
    body = b'{"model": "' + b"m" * (4 * 1024 * 1024) + b'"}'
    if not streamed:
        return body
    return (body[i : i + 65536] for i in range(0, len(body), 65536))


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    assert problem["request_id"] == response.headers["x-request-id"]
    return problem


# Auth before size


@pytest.mark.parametrize("streamed", [False, True], ids=["declared", "streamed"])
@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/jobs/bulk", "/v1/keys"])
def test_an_oversized_body_without_a_valid_key_answers_401(
    limited_api: str, path: str, streamed: bool
) -> None:
    for headers in ({}, bearer("ifk_unknown")):
        r = httpx.post(
            f"{limited_api}{path}",
            content=oversized(streamed),
            headers={**headers, "Content-Type": "application/json"},
            timeout=30,
        )

        assert_problem(r, 401)
        assert r.headers["www-authenticate"] == "Bearer"


def test_a_body_that_is_not_json_answers_401_without_a_valid_key_and_422_with_one(
    limited_api: str, engine: Engine
) -> None:
    """FastAPI parses the body before any dependency; the 401 still comes first."""
    key = make_key(engine, new_tenant(), "jobs")
    for headers, status in (({}, 401), (bearer("ifk_unknown"), 401), (bearer(key), 422)):
        r = httpx.post(
            f"{limited_api}/v1/jobs",
            content=b'{"model": "fraud", "inputs": {',
            headers={**headers, "Content-Type": "application/json"},
            timeout=30,
        )
        assert_problem(r, status)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/keys"),
        ("POST", "/v1/models/fraud/versions"),
        ("PUT", "/v1/models/fraud/aliases/production"),
    ],
)
def test_an_oversized_body_on_an_admin_route_answers_403_to_a_jobs_key_and_413_to_admin(
    limited_api: str, engine: Engine, method: str, path: str
) -> None:
    jobs_key = make_key(engine, new_tenant(), "jobs")
    admin_key = make_key(engine, new_tenant(), "admin")

    def send(key: str) -> httpx.Response:
        return httpx.request(
            method,
            f"{limited_api}{path}",
            content=oversized(streamed=False),
            headers={**bearer(key), "Content-Type": "application/json"},
            timeout=30,
        )

    assert_problem(send(jobs_key), 403)
    problem = assert_problem(send(admin_key), 413)
    assert problem["detail"] == f"the request body is larger than {MAX_BODY} bytes"


def test_the_bulk_route_has_its_own_limit(limited_api: str, engine: Engine) -> None:
    key = make_key(engine, new_tenant(), "jobs")
    body = {"model": "", "items": [{"inputs": {"pad": "x" * (2 * MAX_BODY)}}]}
    with httpx.Client(base_url=limited_api, headers=bearer(key), timeout=30) as client:
        assert client.post("/v1/jobs", json=body).status_code == 413
        assert client.post("/v1/jobs/bulk", json=body).status_code == 422


# Size before rate, rate before validation


def test_past_the_rate_a_key_gets_429_with_retry_after_and_its_tenants_other_key_goes_on(
    limited_api: str, engine: Engine
) -> None:
    tenant = new_tenant()
    first, second = make_key(engine, tenant, "jobs"), make_key(engine, tenant, "jobs")
    with httpx.Client(base_url=limited_api, headers=bearer(first), timeout=30) as client:
        within = [client.get("/v1/jobs").status_code for _ in range(RATE)]
        refused = client.get("/v1/jobs")

        assert within == [200] * RATE
        problem = assert_problem(refused, 429)
        assert 1 <= int(refused.headers["retry-after"]) <= 3600
        assert problem["title"] == "Too Many Requests"
        # Past the rate, the size still answers first; the rate answers before validation.
        assert client.post("/v1/jobs", content=oversized(streamed=False)).status_code == 413
        assert client.post("/v1/jobs", json={"model": ""}).status_code == 429

    assert httpx.get(f"{limited_api}/v1/jobs", headers=bearer(second)).status_code == 200
    metrics = httpx.get(f"{limited_api}/metrics").text
    assert 'inferfleet_api_requests_refused_total{reason="rate_limited"} 2.0' in metrics
    assert 'inferfleet_api_requests_refused_total{reason="too_large"} 1.0' in metrics


def test_an_oversized_body_answers_413_and_does_not_count_against_the_rate(
    limited_api: str, engine: Engine
) -> None:
    key = make_key(engine, new_tenant(), "jobs")
    with httpx.Client(base_url=limited_api, headers=bearer(key), timeout=30) as client:
        too_large = [
            client.post("/v1/jobs", content=oversized(streamed=False)).status_code
            for _ in range(RATE + 1)
        ]
        within = [client.get("/v1/jobs").status_code for _ in range(RATE)]

    assert too_large == [413] * (RATE + 1)
    assert within == [200] * RATE


@pytest.fixture
def api_without_redis(settings: Settings, engine: Engine, kafka: str, s3: Any) -> Iterator[str]:
    """The API with two requests per key per hour, counted in a Redis where nothing listens."""
    yield from serve(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0", rate_limit="2/hour")


def test_the_rate_limit_holds_in_the_process_while_redis_is_down(
    api_without_redis: str, engine: Engine
) -> None:
    first, second = make_key(engine, new_tenant(), "jobs"), make_key(engine, new_tenant(), "jobs")

    def status(key: str) -> int:
        return httpx.get(
            f"{api_without_redis}/v1/jobs", headers=bearer(key), timeout=30
        ).status_code

    answers = [status(first) for _ in range(4)]

    assert answers == [200, 200, 429, 429]
    assert status(second) == 200
    metrics = httpx.get(f"{api_without_redis}/metrics").text
    assert "inferfleet_api_rate_limit_fallback 1.0" in metrics
    assert "inferfleet_api_rate_limit_fallbacks_total 1.0" in metrics


# Validation before availability


@pytest.fixture
def api_without_kafka(settings: Settings, engine: Engine, s3: Any) -> Iterator[str]:
    """The API with the real database and a Kafka address where nothing listens."""
    yield from serve(settings, kafka_bootstrap=f"127.0.0.1:{free_port()}", produce_timeout_s=1.0)


def test_invalid_inputs_answer_422_while_kafka_is_down_and_valid_ones_503(
    api_without_kafka: str, publish_model: PublishModel, engine: Engine
) -> None:
    model = publish_model()
    key = make_key(engine, new_tenant(), "jobs")
    valid = random_inputs(1, 31)[0]
    with httpx.Client(base_url=api_without_kafka, headers=bearer(key), timeout=30) as client:
        bad_inputs = client.post(
            "/v1/jobs", json={"model": model.name, "inputs": {**valid, "hour_of_day": 99}}
        )
        bad_body = client.post("/v1/jobs", json={"model": model.name})
        good = client.post("/v1/jobs", json={"model": model.name, "inputs": valid})

    problem = assert_problem(bad_inputs, 422)
    assert problem["errors"][0]["loc"] == ["inputs", "hour_of_day"]
    assert_problem(bad_body, 422)
    # Admission cannot ask Kafka either, and does not refuse: the produce answers 503.
    assert_problem(good, 503)
    assert good.headers["retry-after"].isdigit()


# Admission by backlog

MAX_LAG = 10


@pytest.fixture
def admitting_api(settings: Settings, engine: Engine, kafka: str, s3: Any) -> Iterator[str]:
    """The API refusing jobs for a topic more than MAX_LAG messages behind."""
    yield from serve(settings, admission_max_lag=MAX_LAG, admission_check_s=0.1)


def backlog_onto(settings: Settings, model: str, count: int) -> None:
    """`count` messages onto `model`'s interactive topic, which no worker reads."""
    producer = make_producer(settings, client_id="test-backlog")
    try:
        topic = job_topic(model, "interactive")
        records = [Record(topic, f"k{i}".encode(), b"{}") for i in range(count)]
        send_all(producer, records, timeout_s=30)
    finally:
        producer.close(timeout=5)


def test_a_model_whose_topic_is_too_far_behind_answers_429_and_others_are_admitted(
    admitting_api: str, settings: Settings, publish_model: PublishModel, engine: Engine
) -> None:
    behind, idle = publish_model(), publish_model()
    key = make_key(engine, new_tenant(), "jobs")
    inputs = random_inputs(2, 41)
    with httpx.Client(base_url=admitting_api, headers=bearer(key), timeout=30) as client:

        def submit(model: str) -> httpx.Response:
            return client.post("/v1/jobs", json={"model": model, "inputs": inputs[0]})

        assert submit(behind.name).status_code == 202
        backlog_onto(settings, behind.name, 3 * MAX_LAG)
        answers: list[httpx.Response] = []

        def refused() -> httpx.Response | None:
            answers.append(submit(behind.name))
            return answers[-1] if answers[-1].status_code == 429 else None

        refusal = eventually(refused, "a submission refused for the backlog", timeout=30)
        bulk = client.post(
            "/v1/jobs/bulk",
            json={"model": behind.name, "items": [{"inputs": row} for row in inputs]},
        )
        other = submit(idle.name)

    problem = assert_problem(refusal, 429)
    assert refusal.headers["retry-after"] == str(settings.retry_after_s)
    waiting = re.search(rf"model '{behind.name}' has (\d+) jobs waiting", problem["detail"])
    assert waiting is not None, problem["detail"]
    assert int(waiting[1]) > MAX_LAG
    assert_problem(bulk, 429)
    assert other.status_code == 202
    accepted = 1 + sum(a.status_code == 202 for a in answers)
    assert len(job_rows(engine, behind.name)) == accepted
