"""Webhook deliveries of a job: every attempt, and redelivery of its last event."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import Connection, select

from api.plumbing.deps import PrincipalDep, ServicesDep
from api.plumbing.problems import ProblemError, problem_responses
from api.plumbing.store import get_job
from inferfleet.jobs import outbox
from inferfleet.jobs.schemas import DeliveryList, DeliveryView
from inferfleet.tables import webhook_attempts, webhook_events

router = APIRouter(prefix="/v1/jobs", tags=["deliveries"])


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


@router.get("/{job_id}/deliveries", response_model=DeliveryList, responses=problem_responses(404))
def list_deliveries(job_id: str, services: ServicesDep, principal: PrincipalDep) -> DeliveryList:
    """Every delivery attempt of the job's webhook events, oldest first; `pending` is an
    attempt still to be made."""
    with services.engine.connect() as conn:
        _own_job(conn, principal.reads, job_id)
        return _deliveries(conn, job_id)


@router.post(
    "/{job_id}/deliveries/redeliver",
    status_code=202,
    response_model=DeliveryList,
    responses=problem_responses(404, 409),
)
def redeliver(job_id: str, services: ServicesDep, principal: PrincipalDep) -> DeliveryList:
    """Send the job's last event again, with the same `webhook-id`; its retry window
    starts over. 409 when the job has no event yet."""
    with services.engine.begin() as conn:
        _own_job(conn, principal.reads, job_id)
        if not outbox.redeliver(conn, job_id, services.settings.webhook_retry_window_s):
            raise ProblemError(
                409, "Conflict", f"job {job_id} has no webhook event to deliver again"
            )
        return _deliveries(conn, job_id)
