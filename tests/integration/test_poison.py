"""Poison inputs against real workers, Kafka, Postgres and S3: each fails its own job,
the worker stays up, and a job that kills every worker is dead-lettered after its
attempts while every neighbour succeeds exactly once."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kafka import KafkaConsumer
from sqlalchemy import Engine

from inferfleet.clients.topics import dlq_topic, job_topic
from inferfleet.settings import Settings
from tests.integration.conftest import (
    ROOT,
    bearer,
    eventually,
    job_rows,
    make_key,
    terminal_writes,
)
from tests.integration.killer.sitecustomize import EXIT_STATUS, KILLER_AMOUNT
from tests.integration.test_jobs import random_inputs

KILLER = Path(__file__).resolve().parent / "killer"
SIXTEEN_MIB = 16 * 1024 * 1024


@pytest.fixture
def tenants(api_url: str, engine: Engine) -> Iterator[tuple[str, httpx.Client, httpx.Client]]:
    """(the poisoning tenant, a client of it, a client of a bystander tenant)."""
    poisoner = f"t-{uuid.uuid4().hex[:10]}"
    bystander = f"t-{uuid.uuid4().hex[:10]}"
    with (
        httpx.Client(
            base_url=api_url, timeout=60, headers=bearer(make_key(engine, poisoner, "jobs"))
        ) as bad,
        httpx.Client(
            base_url=api_url, timeout=60, headers=bearer(make_key(engine, bystander, "jobs"))
        ) as good,
    ):
        yield poisoner, bad, good


def submit(client: httpx.Client, body: dict[str, Any]) -> str:
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def dead_letters(settings: Settings, topic: str, count: int) -> list[Any]:
    consumer = KafkaConsumer(
        dlq_topic(topic),
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,
    )
    found = []
    for record in consumer:
        found.append(record)
        if len(found) == count:
            break
    consumer.close()
    return found


def test_deep_and_oversized_input_objects_fail_alone_and_the_worker_keeps_serving(
    tenants: tuple[str, httpx.Client, httpx.Client],
    publish_model,
    start_worker,
    engine: Engine,
    settings: Settings,
    s3: Any,
) -> None:
    poisoner, bad, good = tenants
    model = publish_model()
    prefix = f"tenants/{poisoner}/{model.name}"
    levels = 100_000
    objects = {
        "deep": b'{"transaction_amount": ' + b"[" * levels + b"]" * levels + b"}",
        "oversized": b'{"merchant_category": "' + b"x" * SIXTEEN_MIB + b'"}',
        # Under the limit, but its schema error would repeat 5 MiB in a Kafka header.
        "wordy": b'{"merchant_category": "' + b"x" * (5 * 1024 * 1024) + b'"}',
    }
    uris = {}
    for name, data in objects.items():
        s3.put_object(Bucket=settings.s3_bucket, Key=f"{prefix}/{name}.json", Body=data)
        uris[name] = f"s3://{settings.s3_bucket}/{prefix}/{name}.json"
    # Everything is queued before the worker starts, so poison and bystanders share polls.
    poison = {name: submit(bad, {"model": model.name, "input_uri": u}) for name, u in uris.items()}
    rows = random_inputs(20, seed=301)
    others = [submit(good, {"model": model.name, "inputs": row}) for row in rows]

    worker = start_worker(model.name)
    jobs = {
        job_id: client.get(f"/v1/jobs/{job_id}", params={"wait": 60}).json()
        for client, ids in ((bad, poison.values()), (good, others))
        for job_id in ids
    }

    assert {jobs[i]["status"] for i in others} == {"succeeded"}
    deep, oversized, wordy = (jobs[poison[name]] for name in ("deep", "oversized", "wordy"))
    for job in (deep, oversized, wordy):
        assert job["status"] == "failed", job
        assert job["error"]["type"] == "invalid_input"
        assert job["attempts"] == 1, "an input that cannot run is not retried"
    assert uris["deep"] in deep["error"]["message"]
    assert "deeper than 64 levels" in deep["error"]["message"]
    assert uris["oversized"] in oversized["error"]["message"]
    assert f"at most {SIXTEEN_MIB} bytes" in oversized["error"]["message"]
    assert uris["wordy"] in wordy["error"]["message"]
    assert len(wordy["error"]["message"]) < 10_000
    assert worker.proc.poll() is None, worker.log()
    writes = terminal_writes(engine, [*poison.values(), *others])
    assert set(writes.values()) == {1}
    assert len(writes) == len(others) + len(poison)


def test_a_job_that_kills_every_worker_is_dead_lettered_after_its_attempts_alone(
    tenants: tuple[str, httpx.Client, httpx.Client],
    publish_model,
    start_worker,
    engine: Engine,
    settings: Settings,
) -> None:
    _, bad, good = tenants
    model = publish_model()
    rows = random_inputs(40, seed=302)
    others = [submit(good, {"model": model.name, "inputs": row}) for row in rows[:20]]
    killer_row = {**rows[20], "transaction_amount": KILLER_AMOUNT}
    killer = submit(bad, {"model": model.name, "inputs": killer_row})
    others += [submit(good, {"model": model.name, "inputs": row}) for row in rows[21:]]
    ids = [killer, *others]
    env = {
        "PYTHONPATH": f"{KILLER}:{ROOT}",
        "INFERFLEET_SESSION_TIMEOUT_MS": "6000",  # the group notices a dead member sooner
    }

    def settled() -> bool:
        return all(r.status in ("succeeded", "failed") for r in job_rows(engine, model.name))

    started = time.monotonic()
    deaths = 0
    group = f"workers-{model.name}"
    # A crash loop would need a worker per attempt for ever; isolation needs one per
    # attempt of the killer, and one more that fails it unrun.
    for _ in range(settings.max_attempts + 1):
        worker = start_worker(model.name, group=group, **env)

        def died_or_settled(worker: Any = worker) -> bool:
            return worker.proc.poll() is not None or settled()

        eventually(died_or_settled, "the worker to die or every job to end", timeout=120)
        if worker.proc.poll() is None:
            break
        assert worker.proc.returncode == EXIT_STATUS, worker.log()
        deaths += 1
    assert settled(), "jobs were left unfinished after max_attempts + 1 workers"
    seconds = time.monotonic() - started
    assert worker.proc.poll() is None, "the last worker stays up"

    rows_by_id = {r.id: r for r in job_rows(engine, model.name)}
    assert deaths == settings.max_attempts, "one death per attempt of the killer, no more"
    dead = rows_by_id[killer]
    assert (dead.status, dead.attempts) == ("failed", settings.max_attempts)
    assert dead.error["type"] == "worker_crashed"
    for job_id in others:
        assert rows_by_id[job_id].status == "succeeded", rows_by_id[job_id]
        assert rows_by_id[job_id].error is None
        assert rows_by_id[job_id].attempts <= 2, "a neighbour runs alone at most once"
    writes = terminal_writes(engine, ids)
    assert writes == {job_id: 1 for job_id in ids}, "every job is answered exactly once"
    [record] = dead_letters(settings, job_topic(model.name), 1)
    assert record.key == killer.encode()
    assert json.loads(dict(record.headers)["inferfleet-error"])["type"] == "worker_crashed"
    print(f"killer dead-lettered after {deaths} worker deaths in {seconds:.1f} s")
