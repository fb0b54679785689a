"""Admin routes under /v1/schedules: cron schedules that fire nightly batches.

The scheduler's beat fires them (`scheduler.firing`); `POST /{name}/trigger` fires one
now. Either way a firing is one `validating` batch, which batch ingest takes from there.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from api.plumbing import schedulestore
from api.plumbing.deps import RequestIdDep, ServicesDep, require_admin
from api.plumbing.problems import problem_responses
from inferfleet.batches.schemas import (
    ScheduleCreate,
    ScheduleFired,
    ScheduleList,
    ScheduleView,
)

router = APIRouter(
    prefix="/v1/schedules",
    tags=["schedules"],
    dependencies=[Depends(require_admin)],
    responses=problem_responses(403),
)


@router.post("", status_code=201, response_model=ScheduleView, responses=problem_responses(409))
def create_schedule(
    body: ScheduleCreate, services: ServicesDep, response: Response
) -> ScheduleView:
    """Store a schedule; it first fires at its first scheduled time after now.

    `input_uri` and `output_prefix` must lie under the tenant's S3 prefixes (403); the
    cron, timezone, placeholders, tenant, model, version and webhook are checked (422,
    every bad field named with its value); an existing name is 409.
    """
    view = schedulestore.create(services, body)
    response.headers["Location"] = f"/v1/schedules/{body.name}"
    return view


@router.get("", response_model=ScheduleList)
def list_all(services: ServicesDep) -> ScheduleList:
    """Every schedule of every tenant, by name, with its next run."""
    return schedulestore.listing(services)


@router.get("/{name}", response_model=ScheduleView, responses=problem_responses(404))
def read_schedule(name: str, services: ServicesDep) -> ScheduleView:
    """One schedule, with the latest time it handled and its next run."""
    return schedulestore.read(services, name)


@router.delete("/{name}", response_model=ScheduleView, responses=problem_responses(404))
def delete_schedule(name: str, services: ServicesDep) -> ScheduleView:
    """Stop a schedule; the batches it fired stay."""
    return schedulestore.remove(services, name)


@router.post(
    "/{name}/trigger",
    status_code=202,
    response_model=ScheduleFired,
    responses=problem_responses(404),
)
def trigger(
    name: str, services: ServicesDep, request_id: RequestIdDep, response: Response
) -> ScheduleFired:
    """Fire the schedule now: one batch scheduled for this second (`{date}` is today in
    the schedule's timezone). A second trigger within the same second answers with the
    same batch. The cron's own runs are unaffected."""
    fired = schedulestore.trigger(services, name, request_id)
    response.headers["Location"] = f"/v1/batches/{fired.id}"
    return fired
