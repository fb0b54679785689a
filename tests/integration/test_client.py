"""The client library (client/, `inferfleet_client`) against the real stack: a served API,
Kafka, Postgres, S3 and real workers; retries through a real HTTP proxy of the test's
own that answers 503 in the API's place."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from inferfleet.settings import Settings
from inferfleet.tables import batches
from inferfleet_client import (
    AsyncClient,
    Client,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RetryPolicy,
    UnprocessableError,
    WaitTimeoutError,
)
from inferfleet_client.flows.jobs import Progress
from tests.integration.conftest import job_rows, make_key, serve_app, start_scheduler
from tests.integration.test_jobs import random_inputs

pytestmark = pytest.mark.integration

FAST = RetryPolicy(max_retries=5, max_wait_s=30, backoff_s=0.1, max_backoff_s=0.5)


def tenant_key(engine: Engine, scope: str = "jobs") -> str:
    return make_key(engine, f"cl-{uuid.uuid4().hex[:10]}", scope)


def test_a_job_is_created_read_and_waited_for_sync_and_async(
    api_url: str, engine: Engine, publish_model: Callable[..., Any], start_worker: Any
) -> None:
    model = publish_model()
    start_worker(model.name).wait_ready()
    key = tenant_key(engine)
    inputs = random_inputs(2, 15)

    with Client(api_url, api_key=key, retries=FAST) as client:
        created = client.jobs.create(model.name, inputs[0], metadata={"order": "A-17"})
        assert created.status == "queued"
        assert created.version == str(model.version)  # resolved, never the alias
        assert client.jobs.get(created.id).id == created.id
        job = client.jobs.wait(created.id, timeout_s=60)
        streamed = client.jobs.wait(created.id, events=True, timeout_s=60)

    assert job.status == "succeeded"
    assert job.metadata == {"order": "A-17"}
    assert set(job.outputs or {}) == {"label", "probabilities"}
    assert streamed == job

    async def run() -> tuple[str, list[str]]:
        async with AsyncClient(api_url, api_key=key, retries=FAST) as client:
            made = await client.jobs.create(model.name, inputs[1])
            seen: list[str] = []
            ended = await client.jobs.wait(
                made.id, events=True, timeout_s=60, on_change=lambda j: seen.append(j.status)
            )
            assert await client.jobs.get(made.id) == ended
            return ended.status, seen

    status, seen = asyncio.run(run())
    assert status == "succeeded"
    assert seen[-1] == "succeeded"


def test_without_a_worker_a_job_waits_in_vain_cancels_once_and_has_no_deliveries(
    api_url: str, engine: Engine, publish_model: Callable[..., Any]
) -> None:
    model = publish_model()
    with Client(api_url, api_key=tenant_key(engine), retries=FAST) as client:
        created = client.jobs.create(model.name, random_inputs(1, 3)[0])
        with pytest.raises(WaitTimeoutError) as timed_out:
            client.jobs.wait(created.id, timeout_s=0.5)
        assert timed_out.value.last.status == "queued"

        assert client.jobs.cancel(created.id).status == "cancelled"
        with pytest.raises(ConflictError) as conflict:
            client.jobs.cancel(created.id)
        assert conflict.value.job_status == "cancelled"
        assert conflict.value.request_id
        assert client.jobs.deliveries(created.id) == []
        with pytest.raises(NotFoundError):
            client.jobs.get("job_" + "0" * 26)
        with pytest.raises(UnprocessableError) as invalid:
            client.jobs.create(model.name, {**random_inputs(1, 4)[0], "hour_of_day": "noon"})
        assert [e.loc for e in invalid.value.errors] == [["inputs", "hour_of_day"]]
        assert invalid.value.errors[0].input == "noon"
        listed = list(client.jobs.list(model=model.name, page_size=1))
        assert [j.id for j in listed] == [created.id]


def test_models_are_listed_and_described_to_admin_keys_only(
    api_url: str, engine: Engine, admin_key: str, publish_model: Callable[..., Any]
) -> None:
    model = publish_model()
    with Client(api_url, api_key=admin_key, retries=FAST) as client:
        listed = {m.name: m for m in client.models.list()}
        described = client.models.get(model.name)
    with (
        Client(api_url, api_key=tenant_key(engine), retries=FAST) as client,
        pytest.raises(PermissionDeniedError),
    ):
        client.models.list()

    assert listed[model.name].aliases == {"production": str(model.version)}
    assert listed[model.name].latest_version == str(model.version)
    assert [v.version for v in described.versions] == [str(model.version)]
    assert "hour_of_day" in described.versions[0].request_schema["properties"]


def test_many_jobs_go_in_chunks_and_are_waited_for_together(
    api_url: str, engine: Engine, publish_model: Callable[..., Any], start_worker: Any
) -> None:
    model = publish_model()
    start_worker(model.name).wait_ready()
    key = tenant_key(engine)
    submitted: list[Progress] = []
    waited: list[Progress] = []

    with Client(api_url, api_key=key, retries=FAST) as client:
        ids = client.jobs.create_many(
            model.name, random_inputs(250, 7), chunk_size=100, on_progress=submitted.append
        )
        jobs = client.jobs.wait_many(ids, timeout_s=120, on_progress=waited.append)

    async def run() -> list[str]:
        async with AsyncClient(api_url, api_key=key, retries=FAST) as client:
            more = await client.jobs.create_many(model.name, random_inputs(30, 8), chunk_size=7)
            ended = await client.jobs.wait_many(more, timeout_s=120, concurrency=4)
            assert [j.id for j in ended] == more
            return [j.status for j in ended]

    statuses = asyncio.run(run())

    assert [(p.done, p.total) for p in submitted] == [(100, 250), (200, 250), (250, 250)]
    assert len(set(ids)) == 250
    assert [j.id for j in jobs] == ids  # in submit order
    assert {j.status for j in jobs} == {"succeeded"}
    assert [p.done for p in waited] == list(range(1, 251))
    assert statuses == ["succeeded"] * 30
    assert len(job_rows(engine, model.name)) == 280


class Proxy:
    """A real HTTP proxy in front of the API: the first POST to `path` is answered 503
    with Retry-After, either without reaching the API (`refused`) or after the API took
    it, its answer lost (`lost`); everything else is forwarded as it is."""

    def __init__(self, target: str, path: str, mode: str) -> None:
        self.posts: list[dict[str, str]] = []
        lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items() if k.lower() != "host"}
                first = False
                if self.command == "POST" and self.path == path:
                    with lock:
                        proxy.posts.append(headers)
                        first = len(proxy.posts) == 1
                if first and mode == "refused":
                    return self._busy()
                answer = httpx.request(
                    self.command, target + self.path, headers=headers, content=body, timeout=60
                )
                if first:
                    return self._busy()  # the API took it; the client never hears
                self.send_response(answer.status_code)
                for name, value in answer.headers.items():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(name, value)
                self.send_header("content-length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)
                return None

            def _busy(self) -> None:
                problem = json.dumps({"type": "about:blank", "title": "Service Unavailable",
                                      "status": 503, "detail": "proxy", "request_id": None,
                                      "errors": []}).encode()  # fmt: skip
                self.send_response(503)
                self.send_header("content-type", "application/problem+json")
                self.send_header("retry-after", "0")
                self.send_header("content-length", str(len(problem)))
                self.end_headers()
                self.wfile.write(problem)

            def do_GET(self) -> None:
                self._forward()

            def do_POST(self) -> None:
                self._forward()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(api_url: str) -> Iterator[Callable[[str, str], Proxy]]:
    made: list[Proxy] = []

    def _make(path: str, mode: str) -> Proxy:
        made.append(Proxy(api_url, path, mode))
        return made[-1]

    yield _make
    for p in made:
        p.close()


@pytest.mark.parametrize("mode", ["refused", "lost"])
def test_a_503_then_a_202_makes_one_job(
    proxy: Callable[[str, str], Proxy],
    engine: Engine,
    publish_model: Callable[..., Any],
    mode: str,
) -> None:
    model = publish_model()
    front = proxy("/v1/jobs", mode)

    with Client(front.url, api_key=tenant_key(engine), retries=FAST) as client:
        created = client.jobs.create(model.name, random_inputs(1, 9)[0])

    assert len(front.posts) == 2
    assert front.posts[0]["idempotency-key"] == front.posts[1]["idempotency-key"]
    assert [row.id for row in job_rows(engine, model.name)] == [created.id]


@pytest.mark.parametrize("mode", ["refused", "lost"])
def test_a_bulk_submit_retried_after_a_503_makes_its_jobs_once(
    proxy: Callable[[str, str], Proxy],
    engine: Engine,
    publish_model: Callable[..., Any],
    mode: str,
) -> None:
    model = publish_model()
    front = proxy("/v1/jobs/bulk", mode)

    with Client(front.url, api_key=tenant_key(engine), retries=FAST) as client:
        ids = client.jobs.create_many(model.name, random_inputs(40, 10))

    assert len(front.posts) == 2
    assert sorted(row.id for row in job_rows(engine, model.name)) == sorted(ids)


@pytest.mark.parametrize("mode", ["refused", "lost"])
def test_a_batch_submit_retried_after_a_503_makes_one_batch(
    proxy: Callable[[str, str], Proxy],
    engine: Engine,
    publish_model: Callable[..., Any],
    tmp_path: Path,
    mode: str,
) -> None:
    model = publish_model()
    front = proxy("/v1/batches", mode)
    tenant = f"cl-{uuid.uuid4().hex[:10]}"
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"custom_id": "a", "inputs": random_inputs(1, 13)[0]}) + "\n")

    with Client(front.url, api_key=make_key(engine, tenant, "jobs"), retries=FAST) as client:
        batch = client.batches.create(source, model=model.name)

    assert len(front.posts) == 2
    with engine.connect() as conn:
        made = conn.execute(select(batches.c.id).where(batches.c.tenant == tenant)).scalars()
        assert list(made) == [batch.id]


@pytest.fixture
def limited_api(settings: Settings, engine: Engine, kafka: str, s3: Any) -> Iterator[str]:
    """The API with two requests per key per second."""
    yield from serve_app(settings.model_copy(update={"rate_limit": "2/second"}))


def test_429_is_waited_out_after_retry_after_and_raised_once_the_policy_is_spent(
    limited_api: str, engine: Engine, publish_model: Callable[..., Any]
) -> None:
    model = publish_model()
    statuses: list[int] = []
    hooks = {"response": [lambda r: statuses.append(r.status_code)]}
    key = tenant_key(engine)

    with (
        httpx.Client(event_hooks=hooks) as http,
        Client(limited_api, api_key=key, retries=FAST, http=http) as client,
    ):
        made = [client.jobs.create(model.name, inputs) for inputs in random_inputs(5, 11)]

    assert 429 in statuses
    assert statuses[-1] == 202
    assert sorted(r.id for r in job_rows(engine, model.name)) == sorted(j.id for j in made)

    with Client(limited_api, api_key=key, retries=RetryPolicy(max_retries=0)) as client:
        refused = first_refusal(lambda: client.jobs.get(made[0].id), attempts=10)
    assert refused.status == 429
    assert refused.retry_after is not None
    assert refused.retry_after >= 0


def first_refusal(read: Callable[[], Any], attempts: int) -> RateLimitError:
    """The RateLimitError that one of `attempts` reads in a row raises (two per second
    pass: a third in the same second cannot)."""
    for _ in range(attempts):
        try:
            read()
        except RateLimitError as e:
            return e
    pytest.fail(f"{attempts} reads in a row passed a limit of two per second")


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory: pytest.TempPathFactory, settings: Settings) -> Iterator[None]:
    """`python -m scheduler worker -B`: the batches' ingest and results writer."""
    env = {
        "INFERFLEET_REDIS_URL": "redis://127.0.0.1:6379/12",
        "INFERFLEET_TOPIC_PARTITIONS": str(settings.topic_partitions),
        "INFERFLEET_BATCH_POLL_S": "0.2",
        "INFERFLEET_BATCH_CHUNK_ROWS": "2000",
    }
    running = start_scheduler(tmp_path_factory.mktemp("client-scheduler"), "scheduler", env)
    try:
        yield
    finally:
        running.stop()


def test_a_batch_from_a_local_file_is_uploaded_followed_and_read_back(
    api_url: str,
    scheduler: None,
    engine: Engine,
    publish_model: Callable[..., Any],
    start_worker: Any,
    tmp_path: Path,
) -> None:
    model = publish_model()
    start_worker(model.name).wait_ready()
    lines = [{"custom_id": f"row-{n}", "inputs": x} for n, x in enumerate(random_inputs(300, 12))]
    source = tmp_path / "transactions of the day.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    uploaded: list[tuple[int, int]] = []
    progress: list[Any] = []

    with Client(api_url, api_key=tenant_key(engine), retries=FAST) as client:
        batch = client.batches.create(
            source, model=model.name, wait=True, timeout_s=120,
            on_upload=lambda sent, total: uploaded.append((sent, total)),
            on_progress=progress.append,
        )  # fmt: skip
        results = list(client.batches.results(batch.id))
        polled = client.batches.get(batch.id)

    size = source.stat().st_size
    assert uploaded[-1] == (size, size)
    assert "/uploads/" in batch.input_uri
    assert batch.input_uri.endswith("/transactions_of_the_day.jsonl")
    assert batch.status == "completed"
    assert batch.counts.total == batch.counts.succeeded == 300
    assert progress[-1].status == "completed"
    assert polled.id == batch.id
    assert [r.custom_id for r in results] == [line["custom_id"] for line in lines]
    assert {r.status for r in results} == {"succeeded"}
    assert all(r.outputs is not None and "label" in r.outputs for r in results)
