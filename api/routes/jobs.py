"""Routes under /v1/jobs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.plumbing import events, store
from api.plumbing.deps import IdempotencyKey, PrincipalDep, RequestIdDep, ServicesDep
from api.plumbing.problems import problem_responses
from api.plumbing.submit import submit_bulk, submit_job
from inferfleet.errors import FieldError, InvalidInputError
from inferfleet.jobs.schemas import (
    BulkCreated,
    BulkSubmit,
    JobCreated,
    JobList,
    JobStatus,
    JobSubmit,
    JobView,
)

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.post(
    "",
    status_code=202,
    response_model=JobCreated,
    responses={
        200: {"model": JobView, "description": "the job an Idempotency-Key bound"},
        **problem_responses(403, 404, 409),
    },
)
async def create_job(
    body: JobSubmit,
    services: ServicesDep,
    principal: PrincipalDep,
    request_id: RequestIdDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> JobCreated | JSONResponse:
    """Queue one job; answers once Kafka has acknowledged its message.

    With `Idempotency-Key`, a repeat of an equal body within 24 h answers 200 with the
    first job as it is now; a different body under the same key answers 409.
    """
    done = await submit_job(services, principal, body, request_id, idempotency_key)
    if isinstance(done, JSONResponse):
        return done  # the job the key bound, or 409
    response.headers["Location"] = f"/v1/jobs/{done.ids[0]}"
    return JobCreated(
        id=done.ids[0],
        status="queued",
        model=done.model,
        version=str(done.version),
        created_at=done.created_at,
    )


@router.post(
    "/bulk",
    status_code=202,
    response_model=BulkCreated,
    responses={
        200: {"model": BulkCreated, "description": "the jobs an Idempotency-Key bound"},
        **problem_responses(404, 409),
    },
)
async def create_jobs(
    body: BulkSubmit,
    services: ServicesDep,
    principal: PrincipalDep,
    request_id: RequestIdDep,
    idempotency_key: IdempotencyKey = None,
) -> BulkCreated | JSONResponse:
    """Queue many jobs of one model version; every item is validated before any is queued.

    With `Idempotency-Key`, a repeat of an equal body within 24 h answers 200 with the
    first request's `ids`; a different body under the same key answers 409.
    """
    done = await submit_bulk(services, principal, body, request_id, idempotency_key)
    if isinstance(done, JSONResponse):
        return done
    return BulkCreated(ids=done.ids)


@router.get("", response_model=JobList, responses=problem_responses(422))
async def read_jobs(
    services: ServicesDep,
    principal: PrincipalDep,
    status: JobStatus | None = None,
    model: str | None = None,
    batch_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
    ids: Annotated[
        list[str] | None,
        Query(
            alias="id",
            max_length=store.MAX_IDS,
            description="these jobs only, in this order (repeat the parameter; at most 100)",
        ),
    ] = None,
    wait: Annotated[
        float, Query(ge=0, description="with `id`: seconds to hold the answer for them all")
    ] = 0,
) -> JobList:
    """The caller's jobs, newest first, a page at a time (`next_cursor` is null at the end).

    With `id` (repeated), the jobs named instead, in the order named, those the caller
    cannot see left out, `next_cursor` null; with `wait` too, held until every one of
    them has ended or `wait` seconds pass: one request polls many jobs.
    """
    if ids is not None:
        paging = {"status": status, "model": model, "batch_id": batch_id, "cursor": cursor}
        mixed = [
            FieldError(("query", name), "cannot be combined with id", "id_exclusive", value)
            for name, value in paging.items()
            if value is not None
        ]
        if mixed:
            raise InvalidInputError(mixed)
        return await store.wait_for_jobs(services, principal, ids, wait)
    if wait:
        raise InvalidInputError(
            [
                FieldError(
                    ("query", "wait"),
                    "only with id (a single job: GET /v1/jobs/{id}?wait=)",
                    "wait_without_id",
                    wait,
                )
            ]
        )
    return await run_in_threadpool(
        store.page,
        services,
        principal,
        limit=limit,
        cursor=cursor,
        status=status,
        model=model,
        batch_id=batch_id,
    )


@router.post("/{job_id}/cancel", response_model=JobView, responses=problem_responses(404, 409))
def cancel(job_id: str, services: ServicesDep, principal: PrincipalDep) -> JobView:
    """A queued job becomes `cancelled`; a running or finished one answers 409."""
    return store.cancel(services, principal, job_id)


@router.get("/{job_id}", response_model=JobView, responses=problem_responses(404))
async def read_job(
    job_id: str,
    services: ServicesDep,
    principal: PrincipalDep,
    wait: Annotated[float, Query(ge=0, description="seconds to hold the answer")] = 0,
) -> JobView:
    """The job as it is now; with `wait`, held until it is terminal or `wait` seconds pass."""
    return await store.wait_for_job(services, principal, job_id, wait)


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={**events.DOCUMENTED, **problem_responses(404)},
)
async def job_events(
    job_id: str,
    services: ServicesDep,
    principal: PrincipalDep,
    last_event_id: Annotated[
        str | None, Header(description="resume after this event of an earlier stream")
    ] = None,
) -> StreamingResponse:
    """The job as Server-Sent Events: at once, then on every status change
    (`event: job.<status>`); the stream ends after a terminal event."""
    resume = events.last_event_id(last_event_id)
    return events.response(await events.job_events(services, principal, job_id, resume))
