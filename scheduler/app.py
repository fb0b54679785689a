"""The Celery application: a worker on Redis runs the tasks, beat schedules them.

Two queues keep deliveries apart from everything else: `webhooks` holds only the
dispatcher's task, `celery` (the default) holds ingest, sweeps and schedule firing. A
worker started without `-Q` consumes both (local runs, tests); deployments run one
worker per queue, so ingest, sweeps and firing never wait behind deliveries.

Tasks:
- `inferfleet.dispatch_webhooks` (queue `webhooks`), every `INFERFLEET_DISPATCH_INTERVAL_S`:
  claim due attempts for the process's free delivery threads and start them
  (`scheduler.dispatch.Dispatcher`); it returns at once, the threads post and record.
  Calls that pile up expire instead of queueing; several workers share the outbox
  safely (`SKIP LOCKED`).
- `inferfleet.fire_schedules`, every `INFERFLEET_SCHEDULE_TICK_S`: evaluate every
  schedule and insert the batch of each firing that is due (`scheduler.firing`); one
  batch per firing however many beat processes run.
- `inferfleet.sweep_unproduced`, `…sweep_expired` (every `INFERFLEET_SWEEP_INTERVAL_S`)
  and `…sweep_retention` (every `INFERFLEET_SWEEP_RETENTION_INTERVAL_S`): produce jobs
  whose message never left, expire overdue queued jobs, delete results past the
  retention (`scheduler.sweeps`).
- `inferfleet.ingest_batches`, `…finish_batches`, every `INFERFLEET_BATCH_POLL_S`:
  ingest one `validating` batch (`scheduler.ingest`); write the results of batches
  whose jobs all ended and complete them (`scheduler.results`).

Connections are made per process on first use, after Celery's prefork pool has forked.
With `INFERFLEET_SCHEDULER_METRICS_PORT` set, each worker's main process serves the
fleet's sweep and delivery counts on `/metrics` (`scheduler.metrics`).
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any

from celery import Celery
from celery.signals import worker_init
from kombu.entity import Queue
from sqlalchemy import Engine

from inferfleet.clients.db import make_engine
from inferfleet.clients.objectstore import make_s3_client, presigner
from inferfleet.settings import Settings
from scheduler.dispatch import Dispatcher
from scheduler.firing import fire_due
from scheduler.ingest import register as register_batches
from scheduler.metrics import Counts, serve
from scheduler.sweep_tasks import register as register_sweeps

DISPATCH_TASK = "inferfleet.dispatch_webhooks"
SCHEDULES_TASK = "inferfleet.fire_schedules"
WEBHOOK_QUEUE = "webhooks"
DEFAULT_QUEUE = "celery"
QUEUES = (DEFAULT_QUEUE, WEBHOOK_QUEUE)


@dataclass
class Connections:
    """What the tasks of one worker process share."""

    engine: Engine
    s3: Any
    dispatcher: Dispatcher


def make_app(settings: Settings) -> Celery:
    """The Celery app with its tasks and beat schedule, configured from `settings`."""
    app = Celery("inferfleet", broker=settings.redis_url)
    app.conf.update(
        task_ignore_result=True,
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        task_default_queue=DEFAULT_QUEUE,
        task_queues=[Queue(name) for name in QUEUES],  # type: ignore[no-untyped-call]
        task_routes={DISPATCH_TASK: {"queue": WEBHOOK_QUEUE}},
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
    counts = Counts(settings.redis_url)

    def connections() -> Connections:
        with lock:
            if not made:
                engine = make_engine(settings)
                s3 = make_s3_client(settings)
                presign = presigner(s3, settings.presign_expiry_s)
                dispatcher = Dispatcher(engine, settings, presign, count=counts.attempt)
                made.append(Connections(engine, s3, dispatcher))
            return made[0]

    @app.task(name=DISPATCH_TASK)  # type: ignore[untyped-decorator]
    def dispatch_webhooks() -> int:
        return connections().dispatcher.top_up()

    @app.task(name=SCHEDULES_TASK)  # type: ignore[untyped-decorator]
    def fire_schedules() -> dict[str, int]:
        return asdict(fire_due(connections().engine, settings))

    register_sweeps(app, settings, counts, lambda: connections().engine, lambda: connections().s3)
    register_batches(app, settings, lambda: connections().engine, lambda: connections().s3)

    if settings.scheduler_metrics_port:
        # The main process, before the pool forks: one server per worker, not per child.
        worker_init.connect(
            lambda **_: serve(settings, counts),
            weak=False,
            dispatch_uid="inferfleet-scheduler-metrics",
        )
    return app
