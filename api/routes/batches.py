"""Routes under /v1/batches: score every line of an S3 file as one job each.

`POST /v1/batches` checks what can be checked without reading the file (the tenant's S3
prefixes, the model and version, the webhook URL), stores the batch as `validating` and
answers at once. The scheduler's ingest task reads, validates and enqueues the file
after the answer (scheduler/ingest.py); its results writer completes the batch
(scheduler/results.py).
"""

from __future__ import annotations

from typing import Annotated, NoReturn

from fastapi import APIRouter, Query, Response
from sqlalchemy import Connection, func

from api.plumbing.deps import PrincipalDep, RequestIdDep, Services, ServicesDep
from api.plumbing.prefixes import tenant_uri
from api.plumbing.problems import ProblemError, problem_responses
from api.plumbing.store import list_batches
from inferfleet.batches.schemas import BatchCreated, BatchList, BatchStatus, BatchSubmit, BatchView
from inferfleet.batches.view import get_batch, job_counts, load_view, views
from inferfleet.clients.objectstore import presigner
from inferfleet.errors import FieldError, InvalidInputError
from inferfleet.ids import new_batch_id
from inferfleet.jobs.outbox import add_batch_event
from inferfleet.jobs.view import Presigner
from inferfleet.jobs.webhooks import dns, url_problem
from inferfleet.models import registry
from inferfleet.tables import batches, jobs
from inferfleet.tenants.scoping import owned_by

router = APIRouter(prefix="/v1/batches", tags=["batches"])

ACTIVE = ("validating", "queued", "running")
# A resubmission of a batch's failed and expired lines is written, by its ingest, to
# this file in the new batch's folder under the first batch's output prefix.
RESUBMIT_INPUT = "input.jsonl"


def _folder(uri: str) -> str:
    return uri.rstrip("/") + "/"


@router.post(
    "",
    status_code=202,
    response_model=BatchCreated,
    responses=problem_responses(403, 404),
)
def create_batch(
    body: BatchSubmit,
    services: ServicesDep,
    principal: PrincipalDep,
    request_id: RequestIdDep,
    response: Response,
) -> BatchCreated:
    """Accept a batch; its file is read and validated after the answer.

    Follow it with `GET /v1/batches/{id}`: `failed` (with `invalid_lines`, or an
    `error` when the file cannot be read) or `queued`, then `running` and `completed`.
    """
    settings = services.settings
    input_uri = tenant_uri(settings, principal.tenant, ("input_uri",), body.input_uri)
    output_prefix = tenant_uri(settings, principal.tenant, ("output_uri",), body.output_uri)
    with services.engine.connect() as conn:
        version = registry.resolve(conn, body.model, body.version)
    if body.webhook is not None:
        problem = url_problem(str(body.webhook.url), settings.webhook_allowlist, dns(settings))
        if problem is not None:
            url = str(body.webhook.url)
            raise InvalidInputError([FieldError(("webhook", "url"), problem, "url_refused", url)])
    batch_id = new_batch_id()
    with services.engine.begin() as conn:
        conn.execute(
            batches.insert().values(
                id=batch_id,
                tenant=principal.tenant,
                model=version.name,
                version=body.version,  # resolved by ingest, as a schedule's batches are
                status="validating",
                input_uri=input_uri,
                output_prefix=_folder(output_prefix),
                webhook=body.webhook.model_dump(mode="json") if body.webhook else None,
                skip_invalid=body.skip_invalid,
                request_id=request_id,
            )
        )
    response.headers["Location"] = f"/v1/batches/{batch_id}"
    return BatchCreated(id=batch_id, status="validating")


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
    with services.engine.connect() as conn:
        rows, next_cursor = list_batches(
            conn, principal.reads, limit=limit, cursor=cursor, status=status, model=model
        )
        items = views(conn, rows, _presigner(services))
    return BatchList(items=items, next_cursor=next_cursor)


@router.get("/{batch_id}", response_model=BatchView, responses=problem_responses(404))
def read_batch(batch_id: str, services: ServicesDep, principal: PrincipalDep) -> BatchView:
    """The batch as it is now; its counts move as its jobs finish."""
    with services.engine.connect() as conn:
        view = load_view(conn, principal.reads, batch_id, _presigner(services))
    if view is None:
        raise ProblemError(404, "Not Found", f"no batch {batch_id!r}")
    return view


@router.post("/{batch_id}/cancel", response_model=BatchView, responses=problem_responses(404, 409))
def cancel_batch(batch_id: str, services: ServicesDep, principal: PrincipalDep) -> BatchView:
    """The batch becomes `cancelled` and its queued jobs with it; jobs already running
    finish. A batch that has ended answers 409 with `batch_status`.

    A batch still being read stops at its next chunk: the ingest finds it cancelled.
    """
    with services.engine.begin() as conn:
        ended = conn.execute(
            batches.update()
            .where(
                batches.c.id == batch_id,
                owned_by(batches, principal.reads),
                batches.c.status.in_(ACTIVE),
            )
            .values(status="cancelled", completed_at=func.now(), lease_until=None)
            .returning(batches.c.id)
        ).one_or_none()
        if ended is None:
            _refuse(conn, principal.reads, batch_id, "only one that has not ended can be cancelled")
        conn.execute(
            jobs.update()
            .where(jobs.c.batch_id == batch_id, jobs.c.status == "queued")
            .values(status="cancelled", completed_at=func.now())
        )
        add_batch_event(conn, batch_id, services.settings.webhook_retry_window_s)
        view = load_view(conn, None, batch_id, _presigner(services))
    assert view is not None
    return view


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
    with services.engine.begin() as conn:
        row = get_batch(conn, principal.reads, batch_id)
        if row is None or row.status not in ("completed", "cancelled"):
            _refuse(
                conn,
                principal.reads,
                batch_id,
                "only a completed or cancelled one can be resubmitted",
            )
        counts = job_counts(conn, [batch_id]).get(batch_id, {})
        if not counts.get("failed") and not counts.get("expired"):
            raise ProblemError(
                409,
                "Conflict",
                f"batch {batch_id} has no failed or expired lines to resubmit",
                batch_status=row.status,
            )
        new_id = new_batch_id()
        folder = f"{_folder(row.output_prefix)}{new_id}/"
        conn.execute(
            batches.insert().values(
                id=new_id,
                tenant=row.tenant,
                model=row.model,
                version=row.version,
                status="validating",
                input_uri=folder + RESUBMIT_INPUT,
                output_prefix=folder,
                webhook=row.webhook,
                skip_invalid=False,
                resubmitted_from=row.id,
                request_id=request_id,
            )
        )
        view = load_view(conn, None, new_id, _presigner(services))
    assert view is not None
    response.headers["Location"] = f"/v1/batches/{new_id}"
    return view


def _refuse(conn: Connection, tenant: str | None, batch_id: str, allowed: str) -> NoReturn:
    """404 for a batch `tenant` cannot see, else 409 naming its status."""
    row = get_batch(conn, tenant, batch_id)
    if row is None:
        raise ProblemError(404, "Not Found", f"no batch {batch_id!r}")
    raise ProblemError(
        409,
        "Conflict",
        f"batch {batch_id} is {row.status}; {allowed}",
        batch_status=row.status,
    )


def _presigner(services: Services) -> Presigner:
    """Presigned GET URLs for the results files answers name."""
    return presigner(services.s3, services.settings.presign_expiry_s)
