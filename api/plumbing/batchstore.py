"""Batch rows as the API writes and reads them: the operations behind /v1/batches.

A batch is stored `validating` and answered at once; the scheduler's ingest reads,
validates and enqueues its file after the answer (scheduler/ingest.py).
"""

from __future__ import annotations

from typing import Any, NoReturn

from sqlalchemy import Connection, func, select

from api.plumbing import idempotency
from api.plumbing.deps import Principal, Services
from api.plumbing.idempotency import Binding, Bound, KeyTakenError, bind_all
from api.plumbing.paging import newest_first
from api.plumbing.prefixes import tenant_uri
from api.plumbing.problems import ProblemError
from inferfleet.batches.schemas import BatchList, BatchSubmit, BatchView
from inferfleet.batches.view import get_batch, job_counts, load_view, views
from inferfleet.errors import InvalidInputError
from inferfleet.ids import new_batch_id
from inferfleet.jobs.outbox import add_batch_event
from inferfleet.jobs.webhooks import refused_url
from inferfleet.models import registry
from inferfleet.tables import batches, jobs
from inferfleet.tenants.scoping import owned_by

ACTIVE = ("validating", "queued", "running")
# A resubmission of a batch's failed and expired lines is written, by its ingest, to
# this file in the new batch's folder under the first batch's output prefix.
RESUBMIT_INPUT = "input.jsonl"


def _folder(uri: str) -> str:
    return uri.rstrip("/") + "/"


def create(
    services: Services,
    principal: Principal,
    body: BatchSubmit,
    request_id: str,
    idempotency_key: str | None = None,
) -> str | BatchView:
    """Store a batch as `validating`; its ID. What can be checked without reading the
    file is checked first: the tenant's S3 prefixes (403), the model and version (404),
    the webhook URL (422). For an `Idempotency-Key` already bound, the batch it names
    as it is now (answered 200), or 409 for a different body."""
    binding = idempotency.binding_for(principal.tenant, idempotency_key, body)
    if binding is not None and (earlier := _earlier(services, binding)) is not None:
        return earlier
    settings = services.settings
    input_uri = tenant_uri(settings, principal.tenant, ("input_uri",), body.input_uri)
    output_prefix = tenant_uri(settings, principal.tenant, ("output_uri",), body.output_uri)
    with services.engine.connect() as conn:
        version = registry.resolve(conn, body.model, body.version)
    if body.webhook is not None and (refused := refused_url(str(body.webhook.url), settings)):
        raise InvalidInputError([refused])
    batch_id = new_batch_id()
    try:
        with services.engine.begin() as conn:
            if binding is not None and not bind_all(conn, [(binding, Bound(batch_id=batch_id))]):
                raise KeyTakenError(binding.key)  # a concurrent request bound it first
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
    except KeyTakenError as e:
        assert binding is not None
        earlier = _earlier(services, binding)
        if earlier is None:
            raise idempotency.lost_race(binding, settings.retry_after_s) from e
        return earlier
    return batch_id


def _earlier(services: Services, binding: Binding) -> BatchView | None:
    """The batch a live key names, if it was bound with an equal body (409 if not)."""
    with services.engine.connect() as conn:
        bound = idempotency.live(conn, binding)
        if bound is None or bound.batch_id is None:
            return None
        return load_view(conn, binding.tenant, bound.batch_id, services.presigner())


def page(
    services: Services,
    principal: Principal,
    *,
    limit: int,
    cursor: str | None,
    status: str | None,
    model: str | None,
) -> BatchList:
    """The caller's batches, newest first, a page at a time."""
    with services.engine.connect() as conn:
        rows, next_cursor = list_batches(
            conn, principal.reads, limit=limit, cursor=cursor, status=status, model=model
        )
        items = views(conn, rows, services.presigner())
    return BatchList(items=items, next_cursor=next_cursor)


def read(services: Services, principal: Principal, batch_id: str) -> BatchView:
    """The batch as it is now; 404 for one the caller cannot see."""
    with services.engine.connect() as conn:
        view = load_view(conn, principal.reads, batch_id, services.presigner())
    if view is None:
        raise ProblemError(404, "Not Found", f"no batch {batch_id!r}")
    return view


def list_batches(
    conn: Connection,
    tenant: str | None,
    *,
    limit: int,
    cursor: str | None = None,
    status: str | None = None,
    model: str | None = None,
) -> tuple[list[Any], str | None]:
    """A page of `tenant`'s batches, newest first, and the cursor of the next page (or
    None)."""
    query = select(batches).where(owned_by(batches, tenant))
    if status is not None:
        query = query.where(batches.c.status == status)
    if model is not None:
        query = query.where(batches.c.model == model)
    return newest_first(conn, query, batches, limit, cursor)


def cancel(services: Services, principal: Principal, batch_id: str) -> BatchView:
    """The batch becomes `cancelled` and its queued jobs with it; 404 for a batch the
    caller cannot see, 409 for one that has ended."""
    with services.engine.begin() as conn:
        ended = conn.execute(
            batches.update()
            .where(
                batches.c.id == batch_id,
                owned_by(batches, principal.reads),
                batches.c.status.in_(ACTIVE),
            )
            .values(status="cancelled", completed_at=func.now(), lease_until=None, lease_owner=None)
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
        view = load_view(conn, None, batch_id, services.presigner())
    assert view is not None
    return view


def resubmit_failed(
    services: Services, principal: Principal, batch_id: str, request_id: str
) -> BatchView:
    """A new `validating` batch of the failed and expired lines of a batch that has
    ended; 404 for a batch the caller cannot see, 409 for one still active or with no
    such lines."""
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
        view = load_view(conn, None, new_id, services.presigner())
    assert view is not None
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
