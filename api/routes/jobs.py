"""Routes under /v1/jobs."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.plumbing import idempotency
from api.plumbing.deps import PrincipalDep, RequestIdDep, Services, ServicesDep
from api.plumbing.idempotency import Binding
from api.plumbing.prefixes import tenant_uri
from api.plumbing.problems import ProblemError, problem_responses
from api.plumbing.store import cancel_job, get_job, list_jobs
from api.plumbing.submit import Item, submit
from inferfleet.clients.objectstore import presigner
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
from inferfleet.jobs.view import Presigner, job_view
from inferfleet.tables import TERMINAL_STATUSES

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

MAX_WAIT_S = 60.0


@router.post(
    "",
    status_code=202,
    response_model=JobCreated,
    responses={
        200: {"model": JobView, "description": "the job an Idempotency-Key bound"},
        **problem_responses(403, 404, 409),
    },
)
def create_job(
    body: JobSubmit,
    services: ServicesDep,
    principal: PrincipalDep,
    request_id: RequestIdDep,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=255,
            description="an equal body under the same key within 24 h answers 200 with "
            "the first job; a different body answers 409",
        ),
    ] = None,
) -> JobCreated | JSONResponse:
    """Queue one job; answers once Kafka has acknowledged its message.

    With `Idempotency-Key`, a repeat of an equal body within 24 h answers 200 with the
    first job as it is now; a different body under the same key answers 409.
    """
    input_uri = None
    if body.input_uri is not None:
        input_uri = tenant_uri(services.settings, principal.tenant, ("input_uri",), body.input_uri)
    binding = None
    if idempotency_key is not None:
        sent = body.model_dump(mode="json", exclude_unset=True)
        binding = Binding(principal.tenant, idempotency_key, idempotency.request_hash(sent))
        earlier = _bound_job(services, binding)
        if earlier is not None:
            return earlier
    try:
        done = submit(
            services,
            principal,
            model=body.model,
            version_ref=body.version,
            items=[Item(body.inputs, body.metadata, ("inputs",), input_uri)],
            webhook=body.webhook,
            ttl_seconds=body.ttl_seconds,
            request_id=request_id,
            idempotency=binding,
        )
    except idempotency.KeyTakenError:
        # A concurrent duplicate bound the key first: answer with its job.
        assert binding is not None
        earlier = _bound_job(services, binding)
        if earlier is None:
            raise
        return earlier
    response.headers["Location"] = f"/v1/jobs/{done.ids[0]}"
    return JobCreated(
        id=done.ids[0],
        status="queued",
        model=done.model,
        version=str(done.version),
        created_at=done.created_at,
    )


def _bound_job(services: Services, binding: Binding) -> JSONResponse | None:
    """The answer for a key already bound: the job (200), or 409 for another body."""
    with services.engine.connect() as conn:
        found = idempotency.find(conn, binding.tenant, binding.key)
        row = get_job(conn, binding.tenant, found[1]) if found is not None else None
    if found is None or row is None:
        return None
    if found[0] != binding.request_hash:
        raise ProblemError(
            409, "Conflict", f"Idempotency-Key {binding.key!r} was used with a different body"
        )
    view = job_view(row, _presigner(services))
    return JSONResponse(view.model_dump(mode="json"), status_code=200)


@router.post(
    "/bulk",
    status_code=202,
    response_model=BulkCreated,
    responses=problem_responses(404),
)
def create_jobs(
    body: BulkSubmit, services: ServicesDep, principal: PrincipalDep, request_id: RequestIdDep
) -> BulkCreated:
    """Queue many jobs of one model version; every item is validated before any is queued."""
    limit = services.settings.max_bulk_items
    if len(body.items) > limit:
        raise InvalidInputError(
            [
                FieldError(
                    ("items",), f"at most {limit} items per request", "too_long", len(body.items)
                )
            ]
        )
    done = submit(
        services,
        principal,
        model=body.model,
        version_ref=body.version,
        items=[
            Item(inputs=it.inputs, metadata=it.metadata, loc=("items", i, "inputs"))
            for i, it in enumerate(body.items)
        ],
        webhook=body.webhook,
        ttl_seconds=body.ttl_seconds,
        request_id=request_id,
    )
    return BulkCreated(ids=done.ids)


@router.get("", response_model=JobList)
def read_jobs(
    services: ServicesDep,
    principal: PrincipalDep,
    status: JobStatus | None = None,
    model: str | None = None,
    batch_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> JobList:
    """The caller's jobs, newest first, a page at a time (`next_cursor` is null at the end)."""
    with services.engine.connect() as conn:
        rows, next_cursor = list_jobs(
            conn,
            principal.reads,
            limit=limit,
            cursor=cursor,
            status=status,
            model=model,
            batch_id=batch_id,
        )
    presign = _presigner(services)
    return JobList(items=[job_view(r, presign) for r in rows], next_cursor=next_cursor)


@router.post("/{job_id}/cancel", response_model=JobView, responses=problem_responses(404, 409))
def cancel(job_id: str, services: ServicesDep, principal: PrincipalDep) -> JobView:
    """A queued job becomes `cancelled`; a running or finished one answers 409."""
    with services.engine.begin() as conn:
        cancelled, row = cancel_job(
            conn, principal.reads, job_id, services.settings.webhook_retry_window_s
        )
    if row is None:
        raise ProblemError(404, "Not Found", f"no job {job_id!r}")
    if not cancelled:
        raise ProblemError(
            409,
            "Conflict",
            f"job {job_id} is {row.status}; only a queued job can be cancelled",
            job_status=row.status,
        )
    services.metrics.jobs_cancelled.labels(model=row.model).inc()
    return job_view(row, _presigner(services))


@router.get("/{job_id}", response_model=JobView, responses=problem_responses(404))
async def read_job(
    job_id: str,
    services: ServicesDep,
    principal: PrincipalDep,
    wait: Annotated[float, Query(ge=0, description="seconds to hold the answer")] = 0,
) -> JobView:
    """The job as it is now; with `wait`, held until it is terminal or `wait` seconds pass."""

    def load() -> JobView | None:
        with services.engine.connect() as conn:
            row = get_job(conn, principal.reads, job_id)
        return job_view(row, _presigner(services)) if row is not None else None

    deadline = time.monotonic() + min(wait, MAX_WAIT_S)
    pause = 0.02
    while True:
        view = await run_in_threadpool(load)
        if view is None:
            raise ProblemError(404, "Not Found", f"no job {job_id!r}")
        remaining = deadline - time.monotonic()
        if view.status in TERMINAL_STATUSES or remaining <= 0:
            return view
        await asyncio.sleep(min(pause, remaining))
        pause = min(pause * 2, 0.5)


def _presigner(services: Services) -> Presigner:
    """Presigned GET URLs for the `s3://` result URIs an answer returns."""
    return presigner(services.s3, services.settings.presign_expiry_s)
