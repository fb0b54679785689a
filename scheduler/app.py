"""The Celery application: a worker on Redis runs the tasks, beat schedules them.

Tasks:
- `inferfleet.dispatch_webhooks`, every `INFERFLEET_DISPATCH_INTERVAL_S`: one pass of
  the webhook dispatcher over the outbox. Passes that pile up behind a slow one expire
  instead of queueing; several workers share the outbox safely (`SKIP LOCKED`).
- `inferfleet.fire_schedules`, every `INFERFLEET_SCHEDULE_TICK_S`: evaluate every
  schedule and insert the batch of each firing that is due (`scheduler.firing`); one
  batch per firing however many beat processes run.
- `inferfleet.sweep_unproduced`, `…sweep_expired` (every `INFERFLEET_SWEEP_INTERVAL_S`)
  and `…sweep_retention` (every `INFERFLEET_SWEEP_RETENTION_INTERVAL_S`): produce jobs
  whose message never left, expire overdue queued jobs, delete results past the
  retention (`scheduler.sweeps`).
- `inferfleet.ingest_batches`, `…finish_batches`, every `INFERFLEET_BATCH_POLL_S`:
  ingest one `validating` batch (`scheduler.batches`); write the results of batches
  whose jobs all ended and complete them (`scheduler.results`).

Connections are made per process on first use, after Celery's prefork pool has forked.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import httpx
from celery import Celery
from sqlalchemy import Engine

from inferfleet.db import make_engine
from inferfleet.objectstore import make_s3_client, presigner
from inferfleet.settings import Settings
from scheduler.batches import register as register_batches
from scheduler.dispatch import dispatch_once, make_http
from scheduler.firing import fire_due
from scheduler.sweep_tasks import register as register_sweeps

DISPATCH_TASK = "inferfleet.dispatch_webhooks"
SCHEDULES_TASK = "inferfleet.fire_schedules"
DELIVERY_THREADS = 16


@dataclass
class Connections:
    """What the tasks of one worker process share."""

    engine: Engine
    http: httpx.Client
    pool: ThreadPoolExecutor
    s3: Any


def make_app(settings: Settings) -> Celery:
    """The Celery app with its tasks and beat schedule, configured from `settings`."""
    app = Celery("inferfleet", broker=settings.redis_url)
    app.conf.update(
        task_ignore_result=True,
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        beat_schedule={
            "dispatch-webhooks": {
                "task": DISPATCH_TASK,
                "schedule": settings.dispatch_interval_s,
                "options": {"expires": max(1.0, 2 * settings.dispatch_interval_s)},
            },
            "fire-schedules": {
                "task": SCHEDULES_TASK,
                "schedule": settings.schedule_tick_s,
                "options": {"expires": max(1.0, 2 * settings.schedule_tick_s)},
            },
        },
    )
    lock = threading.Lock()
    made: list[Connections] = []

    def connections() -> Connections:
        with lock:
            if not made:
                made.append(
                    Connections(
                        engine=make_engine(settings),
                        http=make_http(settings),
                        pool=ThreadPoolExecutor(DELIVERY_THREADS, "webhook"),
                        s3=make_s3_client(settings),
                    )
                )
            return made[0]

    @app.task(name=DISPATCH_TASK)  # type: ignore[untyped-decorator]
    def dispatch_webhooks() -> int:
        c = connections()
        presign = presigner(c.s3, settings.presign_expiry_s)
        return dispatch_once(c.engine, c.http, settings, presign=presign, pool=c.pool)

    @app.task(name=SCHEDULES_TASK)  # type: ignore[untyped-decorator]
    def fire_schedules() -> dict[str, int]:
        return asdict(fire_due(connections().engine, settings))

    register_sweeps(app, settings, lambda: connections().engine, lambda: connections().s3)
    register_batches(app, settings, lambda: connections().engine, lambda: connections().s3)
    return app
