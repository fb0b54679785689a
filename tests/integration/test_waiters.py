"""Long-polls (`GET /v1/jobs/{id}?wait=`) over real HTTP: woken by the transaction that
ends the job, never by polling Postgres, thousands at once in one process."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import httpx
from sqlalchemy import Engine

from inferfleet.settings import Settings
from inferfleet.tables import jobs
from tests.integration.conftest import bearer, eventually, make_key
from tests.integration.served import Statements, served, services
from tests.integration.test_jobs import random_inputs
from tests.integration.test_notify import insert_queued


def test_a_long_wait_reads_its_job_once_at_each_end_and_polls_nothing(
    settings: Settings, engine: Engine, admin_key: str
) -> None:
    (job_id,) = insert_queued(engine, 1)
    with served(settings) as (app, url):
        statements = Statements(app)
        answer = httpx.get(
            f"{url}/v1/jobs/{job_id}", params={"wait": 3}, headers=bearer(admin_key), timeout=30
        )
        read = statements.reading("jobs")

    assert answer.json()["status"] == "queued"
    # The read when the wait began and the read at its deadline; nothing in between.
    assert len(read) == 2, read


def test_a_long_poll_wakes_on_a_cancel_and_a_worker_result(
    settings: Settings, engine: Engine, admin_key: str, publish_model, start_worker
) -> None:
    model = publish_model()
    with (
        served(settings) as (app, url),
        httpx.Client(base_url=url, headers=bearer(admin_key), timeout=60) as client,
    ):
        statements = Statements(app)
        queued = client.post(
            "/v1/jobs", json={"model": model.name, "inputs": random_inputs(1, 1)[0]}
        )
        job_id = queued.json()["id"]
        answers: list[dict[str, Any]] = []
        waiting = threading.Thread(
            target=lambda: answers.append(
                client.get(f"/v1/jobs/{job_id}", params={"wait": 60}).json()
            )
        )
        waiting.start()
        eventually(lambda: len(services(app).waiters) == 1, "the long-poll to wait")
        assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
        waiting.join(timeout=60)
        cancelled = answers[0]

        worker = start_worker(model.name)
        worker.wait_ready()
        statements.clear()
        done = client.post("/v1/jobs", json={"model": model.name, "inputs": random_inputs(1, 2)[0]})
        finished = client.get(f"/v1/jobs/{done.json()['id']}", params={"wait": 60}).json()
        polled = statements.reading("jobs")

    assert cancelled["status"] == "cancelled"
    assert finished["status"] == "succeeded"
    # The read when the wait began, then one check per transaction that ended jobs
    # (this one's result, and at most a few of the test database's other traffic).
    assert len(polled) < 10, polled


def test_one_process_holds_a_thousand_long_polls_and_one_transaction_wakes_them_all(
    settings: Settings, engine: Engine, admin_key: str
) -> None:
    ids = insert_queued(engine, 1000)

    async def poll_all(url: str) -> list[str]:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        async with httpx.AsyncClient(
            base_url=url, headers=bearer(admin_key), timeout=120, limits=limits
        ) as client:
            answers = await asyncio.gather(
                *(client.get(f"/v1/jobs/{i}", params={"wait": 60}) for i in ids)
            )
        return [a.json()["status"] for a in answers]

    with served(settings) as (app, url):
        waiters = services(app).waiters
        statuses: list[list[str]] = []
        polls = threading.Thread(target=lambda: statuses.append(asyncio.run(poll_all(url))))
        polls.start()
        eventually(lambda: len(waiters) == len(ids), "a thousand long-polls to wait", 120)
        eventually(lambda: held(url) == len(ids), "/metrics to count them held", 60)
        checks_before = waiters.checks
        with engine.begin() as conn:
            conn.execute(
                jobs.update().where(jobs.c.id.in_(ids)).values(status="succeeded"),
            )
        polls.join(timeout=120)
        checks = waiters.checks - checks_before
        held_after = held(url)

    assert statuses == [["succeeded"] * len(ids)]
    # One query answered every waiter (a few more if other tests' jobs ended meanwhile).
    assert 1 <= checks < 10
    assert len(waiters) == 0
    assert held_after == 0


def held(url: str) -> float:
    """`inferfleet_api_long_poll_requests` as the API's /metrics reports it."""
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith("inferfleet_api_long_poll_requests "):
            return float(line.split()[-1])
    raise AssertionError("/metrics has no inferfleet_api_long_poll_requests")


def test_a_long_poll_for_another_tenants_job_is_404_at_once(
    settings: Settings, engine: Engine, api_url: str
) -> None:
    (job_id,) = insert_queued(engine, 1)
    other = make_key(engine, f"t-{uuid.uuid4().hex[:8]}", "jobs")
    answer = httpx.get(
        f"{api_url}/v1/jobs/{job_id}", params={"wait": 60}, headers=bearer(other), timeout=30
    )

    assert answer.status_code == 404


def test_one_request_waits_for_many_jobs_and_answers_them_in_the_order_named(
    settings: Settings, engine: Engine
) -> None:
    ids = insert_queued(engine, 5)
    (foreign,) = insert_queued(engine, 1)
    with engine.begin() as conn:
        conn.execute(jobs.update().where(jobs.c.id == foreign).values(tenant="t-elsewhere"))
    key = make_key(engine, "t-notify", "jobs")
    named = [*ids[::-1], "job_unknown", foreign, ids[0]]
    with served(settings) as (app, url):
        waiters = services(app).waiters
        answers: list[httpx.Response] = []
        waiting = threading.Thread(
            target=lambda: answers.append(
                httpx.get(
                    f"{url}/v1/jobs",
                    params={"id": named, "wait": 60},
                    headers=bearer(key),
                    timeout=90,
                )
            )
        )
        waiting.start()
        eventually(lambda: len(waiters) >= len(ids), "the request to wait for its jobs")
        with engine.begin() as conn:
            conn.execute(jobs.update().where(jobs.c.id.in_(ids[:3])).values(status="succeeded"))
        with engine.begin() as conn:
            conn.execute(jobs.update().where(jobs.c.id.in_(ids[3:])).values(status="cancelled"))
        waiting.join(timeout=90)

    body = answers[0].json()
    # Each job once, in the order named; the unknown and the other tenant's left out;
    # answered after the second transaction, not the first.
    assert [j["id"] for j in body["items"]] == ids[::-1]
    assert [j["status"] for j in body["items"]] == ["cancelled"] * 2 + ["succeeded"] * 3
    assert body["next_cursor"] is None


def test_many_jobs_without_wait_are_answered_as_they_are(
    settings: Settings, engine: Engine, api_url: str, admin_key: str
) -> None:
    ids = insert_queued(engine, 3)
    answer = httpx.get(
        f"{api_url}/v1/jobs", params={"id": ids}, headers=bearer(admin_key), timeout=30
    )

    assert [(j["id"], j["status"]) for j in answer.json()["items"]] == [(i, "queued") for i in ids]


def test_naming_jobs_refuses_paging_filters_too_many_ids_and_a_wait_without_them(
    api_url: str, admin_key: str
) -> None:
    def get(params: dict[str, Any]) -> httpx.Response:
        return httpx.get(f"{api_url}/v1/jobs", params=params, headers=bearer(admin_key), timeout=30)

    mixed = get({"id": ["job_a"], "status": "queued", "cursor": "c"})
    too_many = get({"id": [f"job_{n}" for n in range(101)]})
    lone_wait = get({"wait": 5})

    assert mixed.status_code == 422
    assert {(tuple(e["loc"]), e["input"]) for e in mixed.json()["errors"]} == {
        (("query", "status"), "queued"),
        (("query", "cursor"), "c"),
    }
    assert too_many.status_code == 422
    assert [tuple(e["loc"]) for e in too_many.json()["errors"]] == [("query", "id")]
    assert lone_wait.status_code == 422
    assert [(tuple(e["loc"]), e["input"]) for e in lone_wait.json()["errors"]] == [
        (("query", "wait"), 5)
    ]
