"""The request id travels with a job from the API's X-Request-ID into the worker's log."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

import httpx
from sqlalchemy import Engine, text

from tests.integration.conftest import PublishModel, WorkerProcess, eventually
from tests.integration.test_jobs import random_inputs


def test_a_line_about_a_job_names_the_request_that_submitted_it(
    client: httpx.Client,
    publish_model: PublishModel,
    start_worker: Callable[..., WorkerProcess],
    engine: Engine,
) -> None:
    model = publish_model()
    request_id = f"req-logs-{uuid.uuid4().hex}"
    r = client.post(
        "/v1/jobs",
        json={"model": model.name, "inputs": random_inputs(1, seed=21)[0], "ttl_seconds": 3600},
        headers={"X-Request-ID": request_id},
    )
    assert r.status_code == 202, r.text
    assert r.headers["X-Request-ID"] == request_id
    job_id = r.json()["id"]
    # Expire the job before any worker takes it: an expiry is logged once per job.
    with engine.begin() as conn:
        conn.execute(text("UPDATE jobs SET deadline = now() WHERE id = :id"), {"id": job_id})

    worker = start_worker(model.name)
    assert client.get(f"/v1/jobs/{job_id}", params={"wait": 30}).json()["status"] == "expired"

    line = re.compile(rf"job_id={job_id} request_id={request_id} model={model.name} .*expired")
    eventually(lambda: line.search(worker.log()), "the worker's line about the expired job")
