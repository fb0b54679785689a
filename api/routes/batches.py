"""Routes under /v1/batches: score every line of an S3 file as one job each.

`POST /v1/batches` checks what can be checked without reading the file (the tenant's S3
prefixes, the model and version, the webhook URL), stores the batch as `validating` and
answers at once. The scheduler's ingest task reads, validates and enqueues the file
after the answer (scheduler/ingest.py); its results writer completes the batch
(scheduler/results.py).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import JSONResponse, StreamingResponse

from api.plumbing import batchstore, events
from api.plumbing.deps import IdempotencyKey, PrincipalDep, RequestIdDep, ServicesDep
from api.plumbing.problems import problem_responses
from inferfleet.batches.schemas import BatchCreated, BatchList, BatchStatus, BatchSubmit, BatchView

router = APIRouter(prefix="/v1/batches", tags=["batches"])


@router.post(
    "",
    status_code=202,
    response_model=BatchCreated,
    responses={
        200: {"model": BatchView, "description": "the batch an Idempotency-Key bound"},
        **problem_responses(403, 404, 409),
    },
)
def create_batch(
    body: BatchSubmit,
    services: ServicesDep,
    principal: PrincipalDep,
    request_id: RequestIdDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> BatchCreated | JSONResponse:
    """Accept a batch; its file is read and validated after the answer.

    Follow it with `GET /v1/batches/{id}`: `failed` (with `invalid_lines`, or an
    `error` when the file cannot be read) or `queued`, then `running` and `completed`.
    With `Idempotency-Key`, a repeat of an equal body within 24 h answers 200 with the
    first batch as it is now; a different body under the same key answers 409.
    """
    made = batchstore.create(services, principal, body, request_id, idempotency_key)
    if isinstance(made, BatchView):
        return JSONResponse(made.model_dump(mode="json"), status_code=200)
    response.headers["Location"] = f"/v1/batches/{made}"
    return BatchCreated(id=made, status="validating")


@router.get("", response_model=BatchList)
def read_batches(
    services: ServicesDep,
    principal: PrincipalDep,
    status: BatchStatus | None = None,
    model: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> BatchList:
    """The caller's batches, newest first, a page at a time (`next_cursor` is null at the
    end)."""
    return batchstore.page(
        services, principal, limit=limit, cursor=cursor, status=status, model=model
    )


@router.get("/{batch_id}", response_model=BatchView, responses=problem_responses(404))
def read_batch(batch_id: str, services: ServicesDep, principal: PrincipalDep) -> BatchView:
    """The batch as it is now; its counts move as its jobs finish."""
    return batchstore.read(services, principal, batch_id)


@router.post("/{batch_id}/cancel", response_model=BatchView, responses=problem_responses(404, 409))
def cancel_batch(batch_id: str, services: ServicesDep, principal: PrincipalDep) -> BatchView:
    """The batch becomes `cancelled` and its queued jobs with it; jobs already running
    finish. A batch that has ended answers 409 with `batch_status`.

    A batch still being read stops at its next chunk: the ingest finds it cancelled.
    """
    return batchstore.cancel(services, principal, batch_id)


@router.post(
    "/{batch_id}/resubmit-failed",
    status_code=202,
    response_model=BatchView,
    responses=problem_responses(404, 409),
)
def resubmit_failed(
    batch_id: str,
    services: ServicesDep,
    principal: PrincipalDep,
    request_id: RequestIdDep,
    response: Response,
) -> BatchView:
    """A new batch of the failed and expired lines of a batch that has ended.

    The new batch (`resubmitted_from` names the first) runs on the same model version
    and webhook; it is `validating` until its ingest has written its input, those
    lines as JSONL with their `custom_id`, to `input_uri` (a folder of its own under
    the first batch's output prefix, where its results go too) and read it back.
    """
    view = batchstore.resubmit_failed(services, principal, batch_id, request_id)
    response.headers["Location"] = f"/v1/batches/{view.id}"
    return view


@router.get(
    "/{batch_id}/events",
    response_class=StreamingResponse,
    responses={**events.DOCUMENTED, **problem_responses(404)},
)
async def batch_events(
    batch_id: str,
    services: ServicesDep,
    principal: PrincipalDep,
    last_event_id: Annotated[
        str | None, Header(description="resume after this event of an earlier stream")
    ] = None,
) -> StreamingResponse:
    """The batch as Server-Sent Events: `batch.progress` at once and whenever it changes,
    with `estimated_completion_at` from its drain rate; then `batch.completed`,
    `batch.failed` or `batch.cancelled`, and the stream ends."""
    resume = events.last_event_id(last_event_id)
    return events.response(await events.batch_events(services, principal, batch_id, resume))
