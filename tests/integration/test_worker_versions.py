"""Versions a worker loads, against a real worker, Kafka, Postgres and S3: jobs naming
more versions than the bound all finish while no more than the bound is ever loaded,
and a version that cannot be loaded fails its jobs naming it."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime

import httpx
from sqlalchemy import Engine

from inferfleet.jobs.messages import JobMessage
from inferfleet.settings import Settings
from tests.integration.conftest import enqueue_forged, eventually, job_rows, terminal_writes
from tests.integration.test_jobs import random_inputs

VERSIONS = 6
BOUND = 2


def forge_job(engine: Engine, settings: Settings, model: str, version: int) -> str:
    """A queued job naming `version`, written as the API would, for a version the API
    would refuse (the worker must not trust that it exists)."""
    job = JobMessage(
        job_id=f"job_v{version}{uuid.uuid4().hex[:12]}",
        tenant="t-versions",
        model=model,
        version=version,
        inputs=random_inputs(1, seed=402)[0],
        input_uri=None,
        enqueued_at=datetime.now(UTC),
        deadline=None,
        request_id=None,
    )
    return enqueue_forged(engine, settings, job)


def test_jobs_naming_more_versions_than_the_bound_all_finish_within_it(
    client: httpx.Client, publish_model, start_worker, engine: Engine, settings: Settings
) -> None:
    model = publish_model()  # version 1, the `production` alias
    for _ in range(VERSIONS - 1):
        publish_model(alias=None, name=model.name)
    ids: dict[str, int] = {}
    for i, row in enumerate(random_inputs(8 * VERSIONS, seed=401)):
        version = i % VERSIONS + 1  # interleaved: each poll names every version
        r = client.post(
            "/v1/jobs", json={"model": model.name, "version": str(version), "inputs": row}
        )
        assert r.status_code == 202, r.text
        ids[r.json()["id"]] = version
    missing = forge_job(engine, settings, model.name, 99)

    worker = start_worker(
        model.name, INFERFLEET_MODEL_CACHE_VERSIONS=str(BOUND), INFERFLEET_MODEL_IDLE_S="1"
    )
    worker.wait_ready()
    most = 0
    seen: set[str] = set()
    done = threading.Event()

    def watch() -> None:
        nonlocal most
        while not done.is_set():
            try:
                models = worker.readyz().json()["models"]
            except (httpx.TransportError, ValueError):
                continue
            most = max(most, len(models))
            seen.update(m["version"] for m in models)
            done.wait(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()

    def finished() -> bool:
        return all(r.status in ("succeeded", "failed") for r in job_rows(engine, model.name))

    try:
        eventually(finished, "every job to finish", timeout=240)
    finally:
        done.set()
        watcher.join(timeout=5)

    rows = {r.id: r for r in job_rows(engine, model.name)}
    for job_id, version in ids.items():
        assert (rows[job_id].status, rows[job_id].version) == ("succeeded", version)
        assert rows[job_id].attempts == 1, "waiting for a version is not an attempt"
    assert most <= BOUND, f"{most} versions were loaded at once"
    assert seen >= {str(v) for v in range(1, VERSIONS + 1)}, "every version was loaded"
    unloadable = rows[missing]
    assert unloadable.status == "failed"
    assert unloadable.error["type"] == "model_unavailable"
    assert f"{model.name} v99" in unloadable.error["message"]
    assert set(terminal_writes(engine, [*ids, missing]).values()) == {1}
    assert worker.proc.poll() is None
