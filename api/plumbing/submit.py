"""The submission path: resolve, validate, insert, produce, and only then answer.

A job ID is handed out only for a job whose message Kafka acknowledged. If the produce
fails, the rows just inserted are marked failed and the caller answers 503. Once Kafka
has acknowledged, `produced_at` is set: a `queued` row without it is one whose message
never left (a crash in between), which the scheduler's sweep produces later.

Inputs above `claim_check_bytes` go to S3 first and travel as `input_uri`
(`inferfleet.jobs.claims`), so no message outgrows the broker's limit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from api.plumbing import idempotency
from api.plumbing.bodies import deep_inputs
from api.plumbing.deps import Principal, Services
from api.plumbing.idempotency import Binding, bind, unbind
from api.plumbing.prefixes import tenant_uri
from api.plumbing.problems import ProblemError
from api.plumbing.store import fail_unqueued, get_job, insert_jobs
from inferfleet.clients.objectstore import put_all
from inferfleet.clients.topics import Lane, job_topic
from inferfleet.errors import FieldError, InvalidInputError, QueueUnavailableError
from inferfleet.ids import new_job_id
from inferfleet.jobs import messages
from inferfleet.jobs.claims import claim
from inferfleet.jobs.produced import mark_produced
from inferfleet.jobs.schemas import BulkSubmit, JobSubmit, Webhook
from inferfleet.jobs.view import job_view
from inferfleet.jobs.webhooks import refused_url
from inferfleet.jsondepth import MAX_DEPTH
from inferfleet.models import registry
from inferfleet.models.validation import request_validator, validate_instance

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Item:
    """One instance to run, with the location its errors are reported under.

    Exactly one of `inputs` (validated here) and `input_uri` (an object the worker reads
    and validates; the caller has checked that it lies under the tenant's prefixes).
    """

    inputs: dict[str, Any] | None
    metadata: dict[str, str]
    loc: tuple[str | int, ...]
    input_uri: str | None = None


@dataclass(frozen=True)
class Submitted:
    """What was queued: the resolved version, the job IDs in item order, and when."""

    model: str
    version: int
    ids: list[str]
    created_at: datetime


def submit(
    services: Services,
    principal: Principal,
    *,
    model: str,
    version_ref: str,
    items: list[Item],
    webhook: Webhook | None,
    ttl_seconds: int | None,
    request_id: str,
    lane: Lane = "interactive",
    idempotency: Binding | None = None,
) -> Submitted:
    """Queue `items` on `model`'s resolved version, all or nothing.

    In order: the version is resolved (404), the model's backlog admits it (429), the
    inputs are checked, depth first, then their schema (422), and the jobs are queued.

    With `idempotency`, the key is bound to the first job in the transaction that
    inserts the rows; KeyTakenError means a concurrent submit bound it first, and
    nothing was inserted.
    """
    with services.engine.connect() as conn:
        version = registry.resolve(conn, model, version_ref)
    # Only a model that exists is admitted by its lag: a made-up name never reaches Kafka.
    services.admission.admit(version.name)
    validator = request_validator(version)
    errors: list[FieldError] = []
    for item in items:
        if item.inputs is None:
            continue
        too_deep = deep_inputs(item.inputs, item.loc, MAX_DEPTH)
        if too_deep is not None:
            errors.append(too_deep)
        else:
            errors.extend(validate_instance(validator, item.inputs, item.loc))
    if webhook is not None and (refused := refused_url(str(webhook.url), services.settings)):
        errors.append(refused)
    if errors:
        services.metrics.jobs_rejected.labels(reason="invalid").inc()
        raise InvalidInputError(errors)

    now = datetime.now(UTC)
    deadline = now + timedelta(seconds=ttl_seconds) if ttl_seconds else None
    ids = [new_job_id() for _ in items]
    claimed = _claim_check(services, ids, items)
    placed = [
        (None, claimed[job_id]) if job_id in claimed else (item.inputs, item.input_uri)
        for job_id, item in zip(ids, items, strict=True)
    ]
    webhook_json = webhook.model_dump(mode="json") if webhook else None
    rows = [
        {
            "id": job_id,
            "tenant": principal.tenant,
            "model": version.name,
            "version": version.version,
            "status": "queued",
            "lane": lane,
            "inputs": inputs,
            "input_uri": input_uri,
            "metadata": item.metadata,
            "webhook": webhook_json,
            "request_id": request_id,
            "deadline": deadline,
            "created_at": now,
        }
        for job_id, item, (inputs, input_uri) in zip(ids, items, placed, strict=True)
    ]
    with services.engine.begin() as conn:
        if idempotency is not None:
            bind(conn, idempotency, ids[0])
        insert_jobs(conn, rows)

    topic = job_topic(version.name, lane)
    records = [messages.record(topic, row) for row in rows]
    try:
        with services.metrics.produce_seconds.time():
            services.queue.send(records)
    except QueueUnavailableError as e:
        fail_unqueued(services.engine, ids, str(e))
        if idempotency is not None:
            unbind(services.engine, idempotency)
        services.metrics.jobs_rejected.labels(reason="queue_unavailable").inc()
        raise
    _mark_produced(services, ids)
    services.metrics.jobs_submitted.labels(model=version.name).inc(len(ids))
    return Submitted(model=version.name, version=version.version, ids=ids, created_at=now)


def _mark_produced(services: Services, ids: list[str]) -> None:
    """Record that Kafka has the jobs' messages, so the sweeper never produces them again.

    A failure here is logged, not answered: the jobs are on the queue. At worst the
    sweeper produces their messages a second time after its grace period, and the
    worker's status guards make the copy harmless.
    """
    try:
        with services.engine.begin() as conn:
            mark_produced(conn, ids)
    except SQLAlchemyError as e:
        log.warning("could not record produced_at of %d queued job(s): %s", len(ids), e)


def _claim_check(services: Services, ids: list[str], items: list[Item]) -> dict[str, str]:
    """Write every inline input above `claim_check_bytes` to S3; their URIs by job ID.

    Objects are written before any row or message names them. An object store that
    does not take them answers 503: nothing was inserted or queued.
    """
    settings = services.settings
    large = {
        job_id: placed
        for job_id, item in zip(ids, items, strict=True)
        if item.inputs is not None and (placed := claim(settings, job_id, item.inputs))
    }
    try:
        put_all(services.s3, list(large.values()), "claim")
    except (BotoCoreError, ClientError) as e:
        services.metrics.jobs_rejected.labels(reason="object_store_unavailable").inc()
        raise ProblemError(
            503,
            "Service Unavailable",
            f"the object store did not take a large input ({e}). The job was not queued; "
            "submit it again later.",
            headers={"Retry-After": str(settings.retry_after_s)},
        ) from e
    return {job_id: uri for job_id, (uri, _) in large.items()}


def submit_job(
    services: Services,
    principal: Principal,
    body: JobSubmit,
    request_id: str,
    idempotency_key: str | None,
) -> Submitted | JSONResponse:
    """`POST /v1/jobs`: queue one job, or, for an `Idempotency-Key` already bound, the
    answer of the first job (200) or 409 for a different body."""
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
    return done


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
    view = job_view(row, services.presigner())
    return JSONResponse(view.model_dump(mode="json"), status_code=200)


def submit_bulk(
    services: Services, principal: Principal, body: BulkSubmit, request_id: str
) -> Submitted:
    """`POST /v1/jobs/bulk`: every item validated before any is queued."""
    limit = services.settings.max_bulk_items
    if len(body.items) > limit:
        raise InvalidInputError(
            [
                FieldError(
                    ("items",), f"at most {limit} items per request", "too_long", len(body.items)
                )
            ]
        )
    return submit(
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
