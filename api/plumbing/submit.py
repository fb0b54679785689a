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
from sqlalchemy.exc import SQLAlchemyError

from api.plumbing.bodies import deep_inputs
from api.plumbing.deps import Principal, Services
from api.plumbing.idempotency import Binding, bind, unbind
from api.plumbing.problems import ProblemError
from api.plumbing.store import fail_unqueued, insert_jobs
from inferfleet.clients.objectstore import put_all
from inferfleet.clients.topics import Lane, job_topic
from inferfleet.errors import FieldError, InvalidInputError, QueueUnavailableError
from inferfleet.ids import new_job_id
from inferfleet.jobs import messages
from inferfleet.jobs.claims import claim
from inferfleet.jobs.produced import mark_produced
from inferfleet.jobs.schemas import Webhook
from inferfleet.jobs.webhooks import dns, url_problem
from inferfleet.jsondepth import MAX_DEPTH
from inferfleet.models import registry
from inferfleet.models.validation import validate_instance, validator_for

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
    validator = validator_for(version.request_schema)
    errors: list[FieldError] = []
    for item in items:
        if item.inputs is None:
            continue
        too_deep = deep_inputs(item.inputs, item.loc, MAX_DEPTH)
        if too_deep is not None:
            errors.append(too_deep)
        else:
            errors.extend(validate_instance(validator, item.inputs, item.loc))
    if webhook is not None:
        problem = url_problem(
            str(webhook.url), services.settings.webhook_allowlist, dns(services.settings)
        )
        if problem is not None:
            errors.append(FieldError(("webhook", "url"), problem, "url_refused", str(webhook.url)))
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
