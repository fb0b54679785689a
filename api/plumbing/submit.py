"""The submission path: resolve, validate, insert, produce, and only then answer.

A job ID is handed out only for a job whose message Kafka acknowledged. If the produce
fails, the rows just inserted are marked failed and the caller answers 503. Once Kafka
has acknowledged, the caller answers and `produced_at` is set: a `queued` row without it
long after is one whose message may never have left (a crash in between), which the
scheduler's sweep produces later.

Inputs above `claim_check_bytes` go to S3 first and travel as `input_uri`
(`inferfleet.jobs.claims`), so no message outgrows the broker's limit.

The routes run on the event loop, and no step parks a thread on I/O for a request:
Postgres is reached through the asyncio engine, a webhook host is looked up on the
resolver's own threads, S3 puts and the checks of a large bulk body run in a worker
thread. The insert, the produce and the `produced_at` update are those of a group of
submits that arrived together (`api.plumbing.groupcommit`): each request is answered
once its own jobs are safe, and one request's failure fails no other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError
from fastapi.responses import JSONResponse
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from api.plumbing import idempotency
from api.plumbing.bodies import deep_inputs
from api.plumbing.deps import Principal, Services
from api.plumbing.groupcommit import GroupCommitter, Submission
from api.plumbing.idempotency import Binding, Bound, KeyTakenError
from api.plumbing.metrics import ApiMetrics
from api.plumbing.prefixes import tenant_uri
from api.plumbing.problems import ProblemError
from api.plumbing.queue import JobQueue
from api.plumbing.store import get_job
from api.plumbing.submitrows import SubmitRows
from api.plumbing.versions import resolve_version
from inferfleet import tracing
from inferfleet.clients.broker import Record
from inferfleet.clients.objectstore import put_all
from inferfleet.clients.outages import DATABASE_AWAY
from inferfleet.clients.topics import Lane, job_topic
from inferfleet.errors import FieldError, InvalidInputError, QueueUnavailableError
from inferfleet.ids import new_job_id
from inferfleet.jobs import messages
from inferfleet.jobs.claims import claim
from inferfleet.jobs.schemas import BulkSubmit, JobSubmit, Webhook
from inferfleet.jobs.view import job_view
from inferfleet.jobs.webhooks import refused_webhook
from inferfleet.jsondepth import MAX_DEPTH
from inferfleet.models.registry import ModelVersion
from inferfleet.models.validation import request_validator, validate_instance
from inferfleet.settings import Settings

TRACER = tracing.tracer(__name__)

T = TypeVar("T")
# Up to this many items are checked and turned into rows on the event loop; more, in a
# worker thread.
INLINE_ITEMS = 64


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


async def submit(
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
    inputs are checked, depth first, then their schema (422), large inputs go to S3
    (503 if it does not take them), and the jobs join a group commit.

    With `idempotency`, the key is bound to the first job in the transaction that
    inserts the rows; KeyTakenError means another submit bound it first, and nothing
    was inserted.
    """
    attributes: dict[str, str | int] = {
        "inferfleet.model": model,
        "inferfleet.lane": lane,
        "inferfleet.jobs": len(items),
    }
    with TRACER.start_as_current_span("inferfleet.submit", attributes=attributes) as span:
        done = await _submit(
            services,
            principal,
            model,
            version_ref,
            items,
            webhook,
            ttl_seconds,
            request_id,
            lane,
            idempotency,
        )
        if len(done.ids) == 1:
            span.set_attribute("inferfleet.job_id", done.ids[0])
        return done


async def _submit(
    services: Services,
    principal: Principal,
    model: str,
    version_ref: str,
    items: list[Item],
    webhook: Webhook | None,
    ttl_seconds: int | None,
    request_id: str,
    lane: Lane,
    idempotency: Binding | None,
) -> Submitted:
    version = await resolve_version(services, model, version_ref)
    # Only a model that exists is admitted by its lag: a made-up name never reaches Kafka.
    await services.admission.admit(version.name)
    errors = await _off_loop(len(items), _invalid_inputs, version, items)
    if webhook is not None and (
        refused := await refused_webhook(str(webhook.url), services.settings)
    ):
        errors.append(refused)
    if errors:
        services.metrics.jobs_rejected.labels(reason="invalid").inc()
        raise InvalidInputError(errors)

    now = datetime.now(UTC)
    ids = [new_job_id() for _ in items]
    large = await _off_loop(len(items), _large_inputs, services.settings, ids, items)
    if large:
        await _claim_check(services, large)
    submission = await _off_loop(
        len(items),
        _new_jobs,
        NewJobs(
            principal.tenant,
            version,
            lane,
            webhook,
            ttl_seconds,
            request_id,
            now,
            tracing.current_traceparent(),
        ),
        ids,
        items,
        {job_id: uri for job_id, (uri, _) in large.items()},
        idempotency,
    )
    try:
        await services.submits.commit(submission)
    except QueueUnavailableError:
        services.metrics.jobs_rejected.labels(reason="queue_unavailable").inc()
        raise
    services.metrics.jobs_submitted.labels(model=version.name).inc(len(ids))
    return Submitted(model=version.name, version=version.version, ids=ids, created_at=now)


async def _off_loop(count: int, work: Callable[..., T], *args: Any) -> T:
    """`work(*args)` for `count` items: on the event loop for a few, in a worker thread
    for many (a large bulk body's checks and rows take longer than a request should
    hold the loop)."""
    if count <= INLINE_ITEMS:
        return work(*args)
    return await asyncio.to_thread(work, *args)


def _invalid_inputs(version: ModelVersion, items: list[Item]) -> list[FieldError]:
    """Every error of the inline inputs: too deep, else against the version's schema."""
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
    return errors


@dataclass(frozen=True)
class NewJobs:
    """What every job of one submit shares."""

    tenant: str
    version: ModelVersion
    lane: Lane
    webhook: Webhook | None
    ttl_seconds: int | None
    request_id: str
    created_at: datetime
    traceparent: str | None  # the submit's span, continued by the worker and dispatcher


def _new_jobs(
    new: NewJobs,
    ids: list[str],
    items: list[Item],
    claimed: dict[str, str],
    binding: Binding | None,
) -> Submission:
    """The rows and messages of the jobs `ids` (inputs in S3 where `claimed`)."""
    deadline = new.created_at + timedelta(seconds=new.ttl_seconds) if new.ttl_seconds else None
    webhook_json = new.webhook.model_dump(mode="json") if new.webhook else None
    rows = [
        {
            "id": job_id,
            "tenant": new.tenant,
            "model": new.version.name,
            "version": new.version.version,
            "status": "queued",
            "lane": new.lane,
            "inputs": None if job_id in claimed else item.inputs,
            "input_uri": claimed.get(job_id, item.input_uri),
            "metadata": item.metadata,
            "webhook": webhook_json,
            "request_id": new.request_id,
            "traceparent": new.traceparent,
            "deadline": deadline,
            "created_at": new.created_at,
        }
        for job_id, item in zip(ids, items, strict=True)
    ]
    topic = job_topic(new.version.name, new.lane)
    return Submission(rows, [messages.record(topic, row) for row in rows], binding)


def _large_inputs(
    settings: Settings, ids: list[str], items: list[Item]
) -> dict[str, tuple[str, bytes]]:
    """The object to write for each inline input above `claim_check_bytes`, by job ID."""
    return {
        job_id: placed
        for job_id, item in zip(ids, items, strict=True)
        if item.inputs is not None and (placed := claim(settings, job_id, item.inputs))
    }


async def _claim_check(services: Services, large: dict[str, tuple[str, bytes]]) -> None:
    """Write the large inputs to S3 (in worker threads) before any row or message names
    them. An object store that does not take them answers 503: nothing was inserted or
    queued."""
    try:
        await asyncio.to_thread(put_all, services.s3, list(large.values()), "claim")
    except (BotoCoreError, ClientError) as e:
        services.metrics.jobs_rejected.labels(reason="object_store_unavailable").inc()
        raise ProblemError(
            503,
            "Service Unavailable",
            f"the object store did not take a large input ({e}). The job was not queued; "
            "submit it again later.",
            headers={"Retry-After": str(services.settings.retry_after_s)},
        ) from e


def submit_committer(
    settings: Settings, db: AsyncEngine, queue: JobQueue, metrics: ApiMetrics
) -> GroupCommitter:
    """The group commit every submit of this process joins (`api.plumbing.groupcommit`)."""

    async def produce(records: Sequence[Record]) -> list[BaseException | None]:
        with metrics.produce_seconds.time():
            return list(await queue.produce(records))

    return GroupCommitter(
        SubmitRows(db),
        produce,
        window_s=settings.submit_window_ms / 1000,
        max_jobs=settings.submit_max_jobs,
        outages=DATABASE_AWAY,
    )


async def submit_job(
    services: Services,
    principal: Principal,
    body: JobSubmit,
    request_id: str,
    idempotency_key: str | None,
) -> Submitted | JSONResponse:
    """`POST /v1/jobs`: queue one job, or, for an `Idempotency-Key` already bound, the
    first job as it is now (200) or 409 for a different body."""
    input_uri = None
    if body.input_uri is not None:
        input_uri = tenant_uri(services.settings, principal.tenant, ("input_uri",), body.input_uri)

    def answer(conn: Connection, bound: Bound) -> dict[str, Any] | None:
        row = get_job(conn, principal.tenant, bound.first_job) if bound.first_job else None
        return None if row is None else job_view(row, services.presigner()).model_dump(mode="json")

    return await _once(
        services,
        idempotency.binding_for(principal.tenant, idempotency_key, body),
        answer,
        lambda binding: submit(
            services,
            principal,
            model=body.model,
            version_ref=body.version,
            items=[Item(body.inputs, body.metadata, ("inputs",), input_uri)],
            webhook=body.webhook,
            ttl_seconds=body.ttl_seconds,
            request_id=request_id,
            idempotency=binding,
        ),
    )


# The 200 answer of a key already bound, from what it names (None: it is gone).
Answer = Callable[[Connection, Bound], dict[str, Any] | None]


async def _once(
    services: Services,
    binding: Binding | None,
    answer: Answer,
    make: Callable[[Binding | None], Awaitable[Submitted]],
) -> Submitted | JSONResponse:
    """`make(binding)`, unless the key is bound already: then the first request's answer
    (200), or 409 for a different body (`idempotency.live`)."""
    if binding is not None and (earlier := await _earlier(services, binding, answer)):
        return earlier
    try:
        return await make(binding)
    except KeyTakenError as e:  # a concurrent submit bound the key first
        assert binding is not None
        earlier = await _earlier(services, binding, answer)
        if earlier is None:  # it was refused after binding, and released the key
            raise idempotency.lost_race(binding, services.settings.retry_after_s) from e
        return earlier


async def _earlier(services: Services, binding: Binding, answer: Answer) -> JSONResponse | None:
    def look(conn: Connection) -> dict[str, Any] | None:
        bound = idempotency.live(conn, binding)
        return None if bound is None else answer(conn, bound)

    async with services.db.connect() as conn:
        found = await conn.run_sync(look)
    return None if found is None else JSONResponse(found, status_code=200)


async def submit_bulk(
    services: Services,
    principal: Principal,
    body: BulkSubmit,
    request_id: str,
    idempotency_key: str | None,
) -> Submitted | JSONResponse:
    """`POST /v1/jobs/bulk`: every item validated before any is queued; for an
    `Idempotency-Key` already bound, the first request's `{"ids"}` (200) or 409."""
    limit = services.settings.max_bulk_items
    if len(body.items) > limit:
        raise InvalidInputError(
            [
                FieldError(
                    ("items",), f"at most {limit} items per request", "too_long", len(body.items)
                )
            ]
        )

    def answer(conn: Connection, bound: Bound) -> dict[str, Any] | None:
        return {"ids": list(bound.job_ids)} if bound.job_ids else None

    return await _once(
        services,
        idempotency.binding_for(principal.tenant, idempotency_key, body),
        answer,
        lambda binding: submit(
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
            idempotency=binding,
        ),
    )
