"""The baseline the batched worker is compared with: plain Celery on Redis, one job per task.

Each task does what a straightforward Celery port of the worker would do for one job:
claim it with the worker's own claim (`worker.persist.claim`, status-guarded),
run the ONNX Runtime session at batch 1 (loaded by the worker's own `ModelStore`),
and write the outputs with one single-row, status-guarded UPDATE (running → succeeded).
That is two transactions per job where the batched worker has two per batch.

Run it as `celery -A bench.celery_baseline worker ...` from the repository root. It is
configured by the environment, read in each worker process on its first task (never at
import, so a prefork parent opens no session to hand down across fork):

    BENCH_CELERY_BROKER   broker URL (default redis://127.0.0.1:6379/0)
    BENCH_MODEL_NAME      the published model to serve
    BENCH_MODEL_VERSION   and its version
    INFERFLEET_*          database, S3, model cache, providers and threads, as the worker reads them
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from typing import Any

from celery import Celery
from celery.signals import worker_process_init
from sqlalchemy import Engine, text

from inferfleet.clients.db import make_engine
from inferfleet.clients.objectstore import make_s3_client
from inferfleet.models.preprocessing import split_outputs
from inferfleet.settings import load_settings
from worker import persist
from worker.modelstore import ModelStore
from worker.runtime import LoadedModel

TASK_NAME = "bench.run_job"
HOLDER = "bench-celery-baseline"  # the claim token a worker would write

app = Celery("bench", broker=os.environ.get("BENCH_CELERY_BROKER", "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)

FINISH_ONE = text(
    """
    UPDATE jobs
       SET status = 'succeeded', outputs = CAST(:outputs AS jsonb), completed_at = now()
     WHERE id = :id AND status = 'running' AND claim_token = :token
    """
)


@dataclass(frozen=True)
class _Process:
    """What one Celery worker process opens once and reuses for every task."""

    engine: Engine
    model: LoadedModel
    retry_window_s: float  # of the webhook events a claim writes for jobs that expired


@functools.cache
def _process() -> _Process:
    settings = load_settings()
    engine = make_engine(settings, pool_size=1)
    store = ModelStore(settings, engine, make_s3_client(settings))
    model = store.get(os.environ["BENCH_MODEL_NAME"], int(os.environ["BENCH_MODEL_VERSION"]))
    return _Process(engine, model, settings.webhook_retry_window_s)


@worker_process_init.connect  # type: ignore[untyped-decorator]
def _open_before_first_task(**_: Any) -> None:
    """Prefork children open their session and engine before taking tasks."""
    _process()


@app.task(name=TASK_NAME)  # type: ignore[untyped-decorator]
def run_job(job_id: str, inputs: dict[str, Any]) -> None:
    """Claim, infer and record one job; a job that is not claimable is skipped."""
    process = _process()
    claim = persist.claim(
        process.engine, [job_id], token=HOLDER, retry_window_s=process.retry_window_s
    )
    if job_id not in claim.taken:
        return
    model = process.model
    outputs = split_outputs(model.output_names, model.run([inputs]), 1)[0]
    with process.engine.begin() as conn:
        conn.execute(FINISH_ONE, {"id": job_id, "outputs": json.dumps(outputs), "token": HOLDER})
