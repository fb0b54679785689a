"""Group commit over real HTTP, Postgres and Kafka: submits that share one insert and
one produce are each answered on their own, and fail alone.

Each test serves an API whose window is far longer than any test (`WINDOW_MS`) and
whose group holds exactly as many jobs as the test sends at once: the group is cut only
when the last of them arrives, so every submit of the test is in the same group, and
`inferfleet_api_produce_duration_seconds_count` (one per produce) shows it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
from sqlalchemy import Engine, text

from api.plumbing.groupcommit import Submission
from api.plumbing.idempotency import Binding
from api.plumbing.submitrows import unqueue_group
from inferfleet.clients.topics import job_topic
from inferfleet.settings import Settings
from tests.integration.conftest import (
    PublishModel,
    bearer,
    eventually,
    job_rows,
    make_key,
    serve_app,
)
from tests.integration.test_jobs import random_inputs

WINDOW_MS = 600_000.0
Post = Callable[[dict[str, Any], dict[str, str]], httpx.Response]


@pytest.fixture
def grouped_api(settings: Settings, engine: Engine, kafka: str, s3: Any) -> Iterator[Any]:
    """Serves an API whose groups hold `size` jobs; call it with the size."""
    stops: list[Iterator[str]] = []

    def serve(size: int) -> str:
        served = serve_app(
            settings.model_copy(update={"submit_window_ms": WINDOW_MS, "submit_max_jobs": size})
        )
        stops.append(served)
        return next(served)

    yield serve
    for served in stops:
        next(served, None)


def post_together(
    url: str, key: str, requests: list[tuple[dict[str, Any], dict[str, str]]]
) -> list[httpx.Response]:
    """POST every (body, headers) to /v1/jobs at once, each on its own connection."""
    with ThreadPoolExecutor(max_workers=len(requests)) as pool:

        def post(request: tuple[dict[str, Any], dict[str, str]]) -> httpx.Response:
            body, headers = request
            with httpx.Client(base_url=url, timeout=60, headers=bearer(key)) as client:
                return client.post("/v1/jobs", json=body, headers=headers)

        return list(pool.map(post, requests))


def produces(url: str) -> int:
    """How many produce calls the API has made."""
    found = re.search(
        r"^inferfleet_api_produce_duration_seconds_count (\S+)$",
        httpx.get(f"{url}/metrics").text,
        re.M,
    )
    return int(float(found.group(1))) if found else 0


def all_produced(engine: Engine, model: str) -> None:
    """Wait until every job row of `model` has `produced_at` (set after the answers)."""
    eventually(
        lambda: all(r.produced_at is not None for r in job_rows(engine, model)),
        f"produced_at on every job of {model}",
    )


@pytest.fixture
def tenant_key(engine: Engine) -> str:
    return make_key(engine, f"t-{uuid.uuid4().hex[:10]}", "jobs")


def test_concurrent_submits_share_one_produce_and_each_gets_its_own_job(
    grouped_api: Any, publish_model: PublishModel, engine: Engine, tenant_key: str
) -> None:
    model = publish_model()
    inputs = random_inputs(24, 90)
    url = grouped_api(len(inputs))

    answers = post_together(
        url, tenant_key, [({"model": model.name, "inputs": i}, {}) for i in inputs]
    )

    assert [a.status_code for a in answers] == [202] * len(inputs)
    ids = [a.json()["id"] for a in answers]
    assert len(set(ids)) == len(ids)
    assert all(a.headers["location"] == f"/v1/jobs/{a.json()['id']}" for a in answers)
    rows = {r.id: r for r in job_rows(engine, model.name)}
    assert sorted(rows) == sorted(ids)
    assert [rows[i].inputs for i in ids] == inputs
    assert all(r.status == "queued" for r in rows.values())
    all_produced(engine, model.name)
    assert produces(url) == 1


def test_a_conflicting_idempotency_key_in_the_group_answers_409_and_its_neighbours_202(
    grouped_api: Any, publish_model: PublishModel, engine: Engine, tenant_key: str
) -> None:
    model = publish_model()
    inputs = random_inputs(8, 91)
    key = {"Idempotency-Key": f"group-{model.name}"}
    keyed = [({"model": model.name, "inputs": i}, key) for i in inputs[:2]]
    plain = [({"model": model.name, "inputs": i}, {}) for i in inputs[2:]]
    url = grouped_api(len(inputs))

    answers = post_together(url, tenant_key, keyed + plain)

    assert sorted(a.status_code for a in answers[:2]) == [202, 409]
    assert [a.status_code for a in answers[2:]] == [202] * len(plain)
    winner = next(a for a in answers[:2] if a.status_code == 202)
    loser = next(a for a in answers[:2] if a.status_code == 409)
    assert loser.headers["content-type"] == "application/problem+json"
    assert key["Idempotency-Key"] in loser.json()["detail"]
    rows = {r.id: r for r in job_rows(engine, model.name)}
    assert len(rows) == 1 + len(plain)
    kept = inputs[answers.index(winner)]
    assert rows[winner.json()["id"]].inputs == kept
    assert inputs[answers.index(loser)] not in [r.inputs for r in rows.values()]
    assert produces(url) == 1


def test_a_value_postgres_refuses_fails_its_submit_alone(
    grouped_api: Any, publish_model: PublishModel, engine: Engine, tenant_key: str
) -> None:
    model = publish_model()
    inputs = random_inputs(6, 92)
    bodies = [
        {"model": model.name, "inputs": i, "metadata": {"n": str(n)}} for n, i in enumerate(inputs)
    ]
    bodies[3]["metadata"] = {"note": "a\x00b"}  # JSONB cannot hold NUL
    url = grouped_api(len(inputs))

    answers = post_together(url, tenant_key, [(b, {}) for b in bodies])

    assert [a.status_code for a in answers] == [202, 202, 202, 422, 202, 202]
    refused = answers[3].json()
    assert answers[3].headers["content-type"] == "application/problem+json"
    assert "cannot be stored" in refused["detail"]
    rows = job_rows(engine, model.name)
    assert sorted(r.id for r in rows) == sorted(
        a.json()["id"] for a in answers if a.status_code == 202
    )
    assert all(r.status == "queued" for r in rows)
    all_produced(engine, model.name)
    assert produces(url) == 1  # the others still shared one produce


def test_a_message_kafka_refuses_fails_its_submit_alone(
    grouped_api: Any, publish_model: PublishModel, engine: Engine, tenant_key: str, kafka: str
) -> None:
    refusing, taking = publish_model(), publish_model()
    # The test's own topic takes no record as large as a job message.
    admin = KafkaAdminClient(bootstrap_servers=kafka)
    try:
        admin.alter_configs(
            [
                ConfigResource(
                    ConfigResourceType.TOPIC,
                    job_topic(refusing.name),
                    configs={"max.message.bytes": "64"},
                )
            ]
        )
    finally:
        admin.close()
    inputs = random_inputs(5, 93)
    bodies = [{"model": taking.name, "inputs": i} for i in inputs]
    bodies[2] = {"model": refusing.name, "inputs": inputs[2]}
    url = grouped_api(len(bodies))

    answers = post_together(url, tenant_key, [(b, {}) for b in bodies])

    assert [a.status_code for a in answers] == [202, 202, 503, 202, 202]
    assert answers[2].headers["retry-after"].isdigit()
    assert "id" not in answers[2].json()
    failed = job_rows(engine, refusing.name)
    assert [(r.status, r.error["type"]) for r in failed] == [("failed", "queue_unavailable")]
    queued = job_rows(engine, taking.name)
    assert sorted(r.id for r in queued) == sorted(
        a.json()["id"] for a in answers if a.status_code == 202
    )
    assert all(r.status == "queued" for r in queued)
    all_produced(engine, taking.name)
    assert produces(url) == 1

    # The refusal did not leave the API's producer broken for everyone after it.
    again = post_together(
        url, tenant_key, [({"model": taking.name, "inputs": i}, {}) for i in inputs]
    )
    assert [a.status_code for a in again] == [202] * 5
    assert produces(url) == 2


def post_keyed(url: str, key: str, model: str, idempotency_key: str) -> httpx.Response:
    body = {"model": model, "inputs": random_inputs(1, 5)[0]}
    headers = bearer(key) | {"Idempotency-Key": idempotency_key}
    return httpx.post(f"{url}/v1/jobs", json=body, headers=headers, timeout=60)


def set_status(engine: Engine, job_id: str, status: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE jobs SET status = :s WHERE id = :id"), {"s": status, "id": job_id}
        )


def refuse(engine: Engine, tenant: str, ids: list[str], key: str) -> set[int]:
    """What the group commit does with a submission whose messages were not all
    acknowledged, on these real rows (the idempotency hash plays no part)."""
    refused = Submission(
        rows=[{"id": i} for i in ids], records=[], binding=Binding(tenant, key, "unused")
    )
    with engine.begin() as conn:
        return unqueue_group(conn, [refused], "not acknowledged")


def test_a_refused_submission_fails_even_when_a_worker_took_it_and_frees_its_key(
    grouped_api: Any, publish_model: PublishModel, engine: Engine
) -> None:
    """A worker took the job from a message that landed unacknowledged: the job fails
    all the same (its result will not be written), and the key is free again."""
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    key, model = make_key(engine, tenant, "jobs"), publish_model()
    url = grouped_api(1)
    first = post_keyed(url, key, model.name, "order-1").json()["id"]
    set_status(engine, first, "running")

    assert refuse(engine, tenant, [first], "order-1") == set()

    [row] = job_rows(engine, model.name)
    assert (row.status, row.error["type"]) == ("failed", "queue_unavailable")
    again = post_keyed(url, key, model.name, "order-1")
    assert again.status_code == 202
    assert again.json()["id"] != first


def test_a_refused_submission_whose_job_already_ended_is_left_as_it_ran(
    grouped_api: Any, publish_model: PublishModel, engine: Engine
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    key, model = make_key(engine, tenant, "jobs"), publish_model()
    url = grouped_api(1)
    first = post_keyed(url, key, model.name, "order-2").json()["id"]
    set_status(engine, first, "succeeded")

    assert refuse(engine, tenant, [first], "order-2") == {0}

    assert [r.status for r in job_rows(engine, model.name)] == ["succeeded"]
    again = post_keyed(url, key, model.name, "order-2")
    assert again.status_code == 200
    assert again.json()["id"] == first
