"""The submission path: resolve, validate, insert, produce, and only then answer.

A job ID is handed out only for a job whose message Kafka acknowledged. If the produce
fails, the rows just inserted are marked failed and the caller answers 503.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from api.deps import Principal, Services
from api.idempotency import Binding, bind, unbind
from api.store import fail_unqueued, insert_jobs
from inferfleet import messages, registry
from inferfleet.broker import Record
from inferfleet.errors import FieldError, InvalidInputError, QueueUnavailableError
from inferfleet.ids import new_job_id
from inferfleet.schemas import Webhook
from inferfleet.topics import Lane, job_topic
from inferfleet.validation import validate_instance, validator_for
from inferfleet.webhooks import url_problem


@dataclass(frozen=True)
class Item:
    """One instance to run, with the location its errors are reported under."""

    inputs: dict[str, Any]
    metadata: dict[str, str]
    loc: tuple[str | int, ...]


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

    With `idempotency`, the key is bound to the first job in the transaction that
    inserts the rows; KeyTakenError means a concurrent submit bound it first, and
    nothing was inserted.
    """
    with services.engine.connect() as conn:
        version = registry.resolve(conn, model, version_ref)
    validator = validator_for(version.request_schema)
    errors: list[FieldError] = []
    for item in items:
        errors.extend(validate_instance(validator, item.inputs, item.loc))
    if webhook is not None:
        problem = url_problem(str(webhook.url), services.settings.webhook_allowlist)
        if problem is not None:
            errors.append(FieldError(("webhook", "url"), problem, "url_refused", str(webhook.url)))
    if errors:
        services.metrics.jobs_rejected.labels(reason="invalid").inc()
        raise InvalidInputError(errors)

    now = datetime.now(UTC)
    deadline = now + timedelta(seconds=ttl_seconds) if ttl_seconds else None
    ids = [new_job_id() for _ in items]
    webhook_json = webhook.model_dump(mode="json") if webhook else None
    rows = [
        {
            "id": job_id,
            "tenant": principal.tenant,
            "model": version.name,
            "version": version.version,
            "status": "queued",
            "lane": lane,
            "inputs": item.inputs,
            "metadata": item.metadata,
            "webhook": webhook_json,
            "request_id": request_id,
            "deadline": deadline,
            "created_at": now,
        }
        for job_id, item in zip(ids, items, strict=True)
    ]
    with services.engine.begin() as conn:
        if idempotency is not None:
            bind(conn, idempotency, ids[0])
        insert_jobs(conn, rows)

    topic = job_topic(version.name, lane)
    records = [
        Record(
            topic=topic,
            key=job_id.encode(),
            value=messages.encode(
                messages.JobMessage(
                    job_id=job_id,
                    tenant=principal.tenant,
                    model=version.name,
                    version=version.version,
                    inputs=item.inputs,
                    input_uri=None,
                    enqueued_at=now,
                    deadline=deadline,
                    request_id=request_id,
                )
            ),
        )
        for job_id, item in zip(ids, items, strict=True)
    ]
    try:
        with services.metrics.produce_seconds.time():
            services.queue.send(records)
    except QueueUnavailableError as e:
        fail_unqueued(services.engine, ids, str(e))
        if idempotency is not None:
            unbind(services.engine, idempotency)
        services.metrics.jobs_rejected.labels(reason="queue_unavailable").inc()
        raise
    services.metrics.jobs_submitted.labels(model=version.name).inc(len(ids))
    return Submitted(model=version.name, version=version.version, ids=ids, created_at=now)
