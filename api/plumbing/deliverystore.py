"""Webhook deliveries of a job as the API reads them, and redelivery of its last event."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from api.plumbing.deps import Principal, Services
from api.plumbing.problems import ProblemError
from api.plumbing.store import get_job
from inferfleet.jobs import outbox
from inferfleet.jobs.schemas import DeliveryList, DeliveryView
from inferfleet.tables import webhook_attempts, webhook_events


def attempts(services: Services, principal: Principal, job_id: str) -> DeliveryList:
    """Every delivery attempt of the job's webhook events, oldest first; 404 for a job
    the caller cannot see."""
    with services.engine.connect() as conn:
        _own_job(conn, principal.reads, job_id)
        return _deliveries(conn, job_id)


def redeliver(services: Services, principal: Principal, job_id: str) -> DeliveryList:
    """The job's last event sent again; 404 for a job the caller cannot see, 409 when it
    has no event yet."""
    with services.engine.begin() as conn:
        _own_job(conn, principal.reads, job_id)
        if not outbox.redeliver(conn, job_id, services.settings.webhook_retry_window_s):
            raise ProblemError(
                409, "Conflict", f"job {job_id} has no webhook event to deliver again"
            )
        return _deliveries(conn, job_id)


def _deliveries(conn: Connection, job_id: str) -> DeliveryList:
    query = (
        select(webhook_attempts, webhook_events.c.type)
        .join(webhook_events, webhook_events.c.id == webhook_attempts.c.event_id)
        .where(webhook_events.c.job_id == job_id)
        .order_by(webhook_events.c.created_at, webhook_attempts.c.attempt)
    )
    return DeliveryList(items=[_view(r) for r in conn.execute(query)])


def _view(row: Any) -> DeliveryView:
    return DeliveryView(
        id=row.id,
        webhook_id=row.event_id,
        event=row.type,
        attempt=row.attempt,
        state=row.state,
        response_status=row.response_status,
        error=row.error,
        created_at=row.created_at,
    )


def _own_job(conn: Connection, tenant: str | None, job_id: str) -> None:
    if get_job(conn, tenant, job_id) is None:
        raise ProblemError(404, "Not Found", f"no job {job_id!r}")
