"""Webhook deliveries of a job: every attempt, and redelivery of its last event."""

from __future__ import annotations

from fastapi import APIRouter

from api.plumbing import deliverystore
from api.plumbing.deps import PrincipalDep, ServicesDep
from api.plumbing.problems import problem_responses
from inferfleet.jobs.schemas import DeliveryList

router = APIRouter(prefix="/v1/jobs", tags=["deliveries"])


@router.get("/{job_id}/deliveries", response_model=DeliveryList, responses=problem_responses(404))
def list_deliveries(job_id: str, services: ServicesDep, principal: PrincipalDep) -> DeliveryList:
    """Every delivery attempt of the job's webhook events, oldest first; `pending` is an
    attempt still to be made."""
    return deliverystore.attempts(services, principal, job_id)


@router.post(
    "/{job_id}/deliveries/redeliver",
    status_code=202,
    response_model=DeliveryList,
    responses=problem_responses(404, 409),
)
def redeliver(job_id: str, services: ServicesDep, principal: PrincipalDep) -> DeliveryList:
    """Send the job's last event again, with the same `webhook-id`; its retry window
    starts over. 409 when the job has no event yet."""
    return deliverystore.redeliver(services, principal, job_id)
