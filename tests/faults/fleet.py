"""A whole fleet of one test (API, two workers, the scheduler, a webhook receiver) on
the suite's private Kafka and Postgres, and `run_fault`: a run of at least 20,000 jobs
with a fault injected in its middle, then drained and audited.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from inferfleet.models.publish import publish
from inferfleet.settings import Settings
from inferfleet.tenants import keys
from tests.faults.audit import audit, wait_drained
from tests.faults.load import Load, Plan, Progress
from tests.faults.services import PrivateStack, Service, free_port
from tests.integration.receiver import Receiver

WORKERS = 2
# The group moves a stopped or killed worker's partitions after this; short, so that a
# fault and its recovery fit a test.
SESSION_TIMEOUT_MS = 6000


def fleet_env(stack: PrivateStack) -> dict[str, str]:
    """Settings every process of the fleet shares (the test process reads them too)."""
    return {
        "INFERFLEET_DATABASE_URL": stack.database_url,
        "INFERFLEET_KAFKA_BOOTSTRAP": stack.bootstrap,
        "INFERFLEET_TOPIC_PARTITIONS": "6",
        "INFERFLEET_TOPIC_REPLICATION": "3",
        # A Redis database of the suite's own (Celery's queues, rate-limit counters).
        "INFERFLEET_REDIS_URL": "redis://127.0.0.1:6379/14",
        "INFERFLEET_RATE_LIMIT": "1000000/second",
        "INFERFLEET_WEBHOOK_ALLOWLIST": "127.0.0.1",
        "INFERFLEET_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
        "INFERFLEET_READINESS_INTERVAL_S": "1",
        # One tenant's thousands of events: more of them in flight, claimed more often,
        # than the defaults' fair share (16 a process) allows.
        "INFERFLEET_DISPATCH_INTERVAL_S": "0.2",
        "INFERFLEET_WEBHOOK_TENANT_INFLIGHT": "48",
        "INFERFLEET_WEBHOOK_BACKOFF_BASE_S": "1",
        "INFERFLEET_WEBHOOK_BACKOFF_MAX_S": "4",
        "INFERFLEET_WEBHOOK_TIMEOUT_S": "3",
        "INFERFLEET_SWEEP_INTERVAL_S": "5",
        "INFERFLEET_SWEEP_UNPRODUCED_AFTER_S": "30",
        "INFERFLEET_INTRA_OP_THREADS": "1",
    }


@dataclass
class Fleet:
    """The processes and endpoints of one test's fleet, serving one model of its own."""

    model: str
    key: str
    webhook_secret: str
    api_url: str
    receiver: Receiver
    api: Service
    scheduler: Service
    workers: list[Service]
    engine: Engine
    stack: PrivateStack
    folder: Path
    services: list[Service] = field(default_factory=list)

    def stop(self) -> None:
        for service in self.services:
            service.stop()
        self.receiver.stop()


def start_fleet(
    stack: PrivateStack,
    settings: Settings,
    engine: Engine,
    s3: Any,
    package: Path,
    folder: Path,
) -> Fleet:
    """Publish the fraud package under a new name and start the fleet that serves it."""
    model = publish(settings, engine, s3, package, name=f"f-{uuid.uuid4().hex[:10]}").name
    with engine.begin() as conn:
        made = keys.create_key(conn, f"t-{uuid.uuid4().hex[:10]}", "jobs")
    env = fleet_env(stack)
    api_port = free_port()
    api = Service("api", ["api", "--port", str(api_port)], env, folder / "api.log")
    beat = ["--schedule-filename", str(folder / "beat-schedule")]
    scheduler = Service(
        "scheduler",
        ["scheduler", "worker", "-B", "--concurrency", "2", *beat],
        env,
        folder / "scheduler.log",
    )
    workers = []
    for n in range(WORKERS):
        port = free_port()
        worker_env = {
            **env,
            "INFERFLEET_WORKER_MODELS": json.dumps([model]),
            "INFERFLEET_WORKER_GROUP": f"workers-{model}",
            "INFERFLEET_WORKER_HTTP_PORT": str(port),
            "INFERFLEET_MODEL_CACHE_DIR": str(folder / f"cache-{n}"),
        }
        workers.append(Service(f"worker-{n}", ["worker"], worker_env, folder / f"worker-{n}.log"))
    receiver = Receiver(port=free_port())
    receiver.start()
    fleet = Fleet(
        model=model,
        key=made.key,
        webhook_secret=made.webhook_secret,
        api_url=f"http://127.0.0.1:{api_port}",
        receiver=receiver,
        api=api,
        scheduler=scheduler,
        workers=workers,
        engine=engine,
        stack=stack,
        folder=folder,
        services=[api, scheduler, *workers],
    )
    try:
        for service in fleet.services:
            service.start()
        api.wait_ready(f"{fleet.api_url}/readyz")
        for worker in workers:
            port = worker.env["INFERFLEET_WORKER_HTTP_PORT"]
            worker.wait_ready(f"http://127.0.0.1:{port}/readyz")
    except BaseException:
        fleet.stop()
        raise
    return fleet


@dataclass(frozen=True)
class Window:
    """When a fault began and when what it broke was back (monotonic times)."""

    began: float
    restored: float
    note: str


Fault = Callable[[Fleet], Window]
REPORT: list[dict[str, Any]] = []


def run_fault(fleet: Fleet, name: str, fault: Fault, plan: Plan | None = None) -> dict[str, Any]:
    """Run `plan`'s jobs with webhooks on some, inject `fault` once a third of them are in
    and some have run, drain, audit; the report is kept for the session's summary.

    Fails the test, after reporting, if any count of the audit is not 0, the run did not
    drain, a request was given up on, or a process of the fleet exited.
    """
    plan = plan or Plan()
    load = Load(fleet.api_url, fleet.key, fleet.model, fleet.receiver.url, plan)
    progress = Progress(fleet.engine, fleet.model)
    started = time.monotonic()
    progress.start()
    load.start()
    wait_until(
        lambda: load.accepted_count() >= plan.jobs // 3 and progress.succeeded() > 0,
        "a third of the jobs accepted and some succeeded",
        timeout=180,
    )
    window = fault(fleet)
    load.join(timeout=plan.give_up_s * 2)
    done_at = wait_drained(fleet.engine, fleet.model, load.accepted, load.with_webhook, timeout=300)
    progress.stop()
    counts = audit(
        fleet.engine,
        fleet.model,
        load.accepted,
        load.with_webhook,
        fleet.receiver,
        fleet.webhook_secret,
    )
    exited = {s.name: s.exit_code() for s in fleet.services if s.exit_code() is not None}
    end = done_at or time.monotonic()
    report = {
        "fault": name,
        "what": window.note,
        "jobs_accepted": counts.accepted,
        "webhook_jobs": counts.webhook_jobs,
        "fault_lasted_s": round(window.restored - window.began, 1),
        "longest_stall_s": round(progress.longest_stall(window.began, end, len(load.accepted)), 1),
        "drained_after_restore_s": (
            round(done_at - window.restored, 1) if done_at is not None else None
        ),
        "run_s": round(end - started, 1),
        "lost": counts.lost,
        "doubled": counts.doubled,
        "problems": counts.problems(),
        "webhooks_redelivered": counts.redelivered,
        "answers": dict(load.answers),
        "requests_given_up": load.abandoned,
        "exited": exited,
    }
    REPORT.append(report)
    print(json.dumps(report, indent=2))
    failures = [f"audit: {counts.problems()}"] if counts.problems() else []
    if done_at is None:
        failures.append("the run did not drain within 300 s of the load's end")
    if load.abandoned:
        failures.append(f"{load.abandoned} request(s) refused for {plan.give_up_s:.0f} s")
    for service in fleet.services:
        if service.exit_code() is not None:
            failures.append(f"{service.name} exited {service.exit_code()}:\n{service.tail(40)}")
    assert not failures, f"{name}: " + "\n".join(failures)
    return report


def wait_until(check: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)
