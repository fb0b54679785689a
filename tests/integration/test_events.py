"""Server-Sent Events over real HTTP: a job's and a batch's stream follow what happens to
their rows in Postgres, resume with `Last-Event-ID`, keep quiet connections alive, and
end after the terminal event.

No worker runs: each test moves its rows itself, as a worker or the results writer would.
"""

from __future__ import annotations

import json
import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, Table, func

from inferfleet.ids import batch_job_id, new_batch_id
from inferfleet.settings import Settings
from inferfleet.tables import batches, jobs
from tests.integration.conftest import PublishModel, bearer, make_key, serve_app
from tests.integration.test_jobs import random_inputs

WAIT_S = 20.0


@dataclass(frozen=True)
class Event:
    """One server-sent event, or a comment (`event` is None)."""

    event: str | None
    id: str | None
    data: dict[str, Any] | None
    comment: str | None = None


class Stream:
    """Reads a stream in a thread, so a test can wait for its next event with a bound."""

    def __init__(self, url: str, key: str, path: str, headers: dict[str, str] | None = None):
        self.events: queue.Queue[Event | None] = queue.Queue()
        self.status: int | None = None
        self.content_type = ""
        self._client = httpx.Client(base_url=url, headers=bearer(key), timeout=60)
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(path, headers or {}), daemon=True)
        self._thread.start()
        assert self._ready.wait(WAIT_S), "the stream did not answer"

    def _read(self, path: str, headers: dict[str, str]) -> None:
        try:
            with self._client.stream("GET", path, headers=headers) as answer:
                self.status = answer.status_code
                self.content_type = answer.headers.get("content-type", "")
                self._ready.set()
                fields: dict[str, str] = {}
                for line in answer.iter_lines():
                    if line.startswith(":"):
                        self.events.put(Event(None, None, None, comment=line[1:].strip()))
                    elif line:
                        name, _, value = line.partition(":")
                        fields[name] = value.strip()
                    elif fields:
                        data = json.loads(fields["data"]) if "data" in fields else None
                        self.events.put(Event(fields.get("event"), fields.get("id"), data))
                        fields = {}
        except httpx.HTTPError:
            pass
        finally:
            self._ready.set()
            self.events.put(None)  # the stream ended

    def next(self, skip_comments: bool = True) -> Event | None:
        """The next event (None: the stream ended)."""
        while True:
            found = self.events.get(timeout=WAIT_S)
            if found is None or found.event is not None or not skip_comments:
                return found

    def close(self) -> None:
        self._client.close()


@pytest.fixture(scope="module")
def events_api(settings: Settings, engine: Engine, kafka: str, s3: Any) -> Iterator[str]:
    """The API with a short tick and keep-alive, so the tests do not wait long."""
    fast = {"events_tick_s": 0.2, "events_keepalive_s": 0.5}
    yield from serve_app(settings.model_copy(update=fast))


@pytest.fixture
def tenant(engine: Engine) -> tuple[str, str]:
    name = f"ev-{os.urandom(4).hex()}"
    return name, make_key(engine, name, "jobs")


def submit(url: str, key: str, model: str) -> str:
    body = {"model": model, "inputs": random_inputs(1, 17)[0]}
    answer = httpx.post(f"{url}/v1/jobs", json=body, headers=bearer(key), timeout=60)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def move(engine: Engine, table: Table, row_id: str, **values: Any) -> None:
    with engine.begin() as conn:
        conn.execute(table.update().where(table.c.id == row_id).values(**values))


def test_a_job_s_stream_follows_its_status_and_ends_after_the_terminal_event(
    events_api: str, engine: Engine, tenant: tuple[str, str], publish_model: PublishModel
) -> None:
    _, key = tenant
    job_id = submit(events_api, key, publish_model().name)
    stream = Stream(events_api, key, f"/v1/jobs/{job_id}/events")
    try:
        assert stream.status == 200
        assert stream.content_type.startswith("text/event-stream")
        first = stream.next()
        assert first is not None
        assert (first.event, first.id) == ("job.queued", "0")
        assert first.data is not None
        assert first.data["id"] == job_id
        assert "attempts" in first.data  # the GET shape

        move(engine, jobs, job_id, status="running", attempts=1)
        running = stream.next()
        assert running is not None
        assert (running.event, running.id) == ("job.running", "1")
        # Put back after a failed attempt, then taken again: both are seen.
        move(engine, jobs, job_id, status="queued")
        again = stream.next()
        assert again is not None
        assert (again.event, again.id) == ("job.queued", "2")
        move(engine, jobs, job_id, status="running", attempts=2)
        second = stream.next()
        assert second is not None
        assert (second.event, second.id) == ("job.running", "3")

        move(engine, jobs, job_id, status="succeeded", outputs={"score": 0.5})
        done = stream.next()
        assert done is not None
        assert (done.event, done.id) == ("job.succeeded", "5")
        assert done.data is not None
        assert done.data["outputs"] == {"score": 0.5}
        assert stream.next() is None  # and the stream ends
    finally:
        stream.close()


def test_a_resumed_job_stream_sends_only_what_came_after_and_a_terminal_job_ends_it(
    events_api: str, engine: Engine, tenant: tuple[str, str], publish_model: PublishModel
) -> None:
    _, key = tenant
    job_id = submit(events_api, key, publish_model().name)
    move(engine, jobs, job_id, status="running", attempts=1)
    stream = Stream(events_api, key, f"/v1/jobs/{job_id}/events", {"Last-Event-ID": "1"})
    try:
        quiet = stream.next(skip_comments=False)  # nothing new: the connection is kept alive
        assert quiet is not None
        assert (quiet.event, quiet.comment) == (None, "keep-alive")
        move(engine, jobs, job_id, status="failed", error={"type": "x", "message": "y"})
        done = stream.next()
        assert done is not None
        assert (done.event, done.id) == ("job.failed", "3")
        assert stream.next() is None
    finally:
        stream.close()

    ended = Stream(events_api, key, f"/v1/jobs/{job_id}/events", {"Last-Event-ID": "3"})
    try:
        last = ended.next()
        assert last is not None
        assert last.event == "job.failed"
        assert ended.next() is None
    finally:
        ended.close()


def test_another_tenant_s_job_or_batch_has_no_stream(
    events_api: str, engine: Engine, tenant: tuple[str, str], publish_model: PublishModel
) -> None:
    _, key = tenant
    job_id = submit(events_api, key, publish_model().name)
    other = make_key(engine, f"ev-{os.urandom(4).hex()}", "jobs")
    for path in (f"/v1/jobs/{job_id}/events", "/v1/batches/bat_none/events"):
        answer = httpx.get(f"{events_api}{path}", headers=bearer(other), timeout=30)
        assert answer.status_code == 404, path
        assert answer.headers["content-type"] == "application/problem+json"


def test_a_batch_s_stream_shows_its_counts_moving_and_ends_when_it_completes(
    events_api: str, engine: Engine, tenant: tuple[str, str], publish_model: PublishModel
) -> None:
    name, key = tenant
    model = publish_model()
    batch_id = new_batch_id()
    lines = 4
    with engine.begin() as conn:
        conn.execute(
            batches.insert().values(
                id=batch_id,
                tenant=name,
                model=model.name,
                version=str(model.version),
                status="queued",
                input_uri=f"s3://bucket/tenants/{name}/in.jsonl",
                output_prefix=f"s3://bucket/tenants/{name}/out/",
                total=lines,
            )
        )
        conn.execute(
            jobs.insert(),
            [
                {
                    "id": batch_job_id(batch_id, line),
                    "tenant": name,
                    "model": model.name,
                    "version": model.version,
                    "status": "queued",
                    "lane": "batch",
                    "inputs": {},
                    "batch_id": batch_id,
                    "line": line,
                }
                for line in range(1, lines + 1)
            ],
        )
    stream = Stream(events_api, key, f"/v1/batches/{batch_id}/events", {"Last-Event-ID": "7"})
    try:
        first = stream.next()
        assert first is not None
        assert (first.event, first.id) == ("batch.progress", "8")  # on from the one sent
        assert first.data is not None
        assert first.data["counts"]["succeeded"] == 0
        assert first.data["estimated_completion_at"] is None  # nothing has run yet

        for line in (1, 2):
            move(engine, jobs, batch_job_id(batch_id, line), status="succeeded")
        moving = stream.next()
        while (
            moving is not None
            and moving.data is not None
            and moving.data["counts"]["succeeded"] < 2
        ):
            moving = stream.next()
        assert moving is not None
        assert moving.event == "batch.progress"
        assert moving.data is not None
        assert moving.data["status"] == "running"
        assert moving.data["estimated_completion_at"] is not None  # jobs end at a rate now

        for line in (3, 4):
            move(engine, jobs, batch_job_id(batch_id, line), status="failed")
        move(engine, batches, batch_id, status="completed", completed_at=func.now())
        last = stream.next()
        while last is not None and last.event == "batch.progress":
            last = stream.next()
        assert last is not None
        assert last.event == "batch.completed"
        assert last.data is not None
        assert last.data["counts"]["failed"] == 2
        assert last.data["estimated_completion_at"] == last.data["completed_at"]
        assert stream.next() is None
    finally:
        stream.close()
