"""Flows of `/v1/jobs`: submit one or many, read, wait (long-poll or event stream),
cancel, deliveries."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from inferfleet_client.errors import NotFoundError, WaitTimeoutError
from inferfleet_client.flows import streams
from inferfleet_client.flows.steps import (
    Emit,
    Flow,
    Parallel,
    Request,
    body_of,
    call,
    checked,
    idempotency_key,
    relay,
    send,
)
from inferfleet_client.models import (
    JOB_TERMINAL,
    BatchWebhook,
    BulkCreated,
    BulkItem,
    BulkRequest,
    DeliveryList,
    Event,
    Job,
    JobCreated,
    JobPage,
    JobRequest,
    Webhook,
)
from inferfleet_client.retries import RetryPolicy

# The longest the server holds a `?wait=` answer; longer waits are several polls.
MAX_WAIT_S = 60.0
# The most jobs one `GET /v1/jobs?id=` names (the server's limit).
MAX_IDS = 100
# The server's default `max_bulk_items`: bulk submits are cut into chunks of this many.
MAX_BULK_ITEMS = 10_000


@dataclass(frozen=True)
class Progress:
    """How far a many-job operation has come: `done` of `total`, and the last job that
    ended (None for submits)."""

    done: int
    total: int
    last: Job | None = None


WebhookSpec = str | Webhook | BatchWebhook | Mapping[str, Any] | None
W = TypeVar("W", Webhook, BatchWebhook)


def webhook_of(value: WebhookSpec, kind: type[W]) -> W | None:
    """A job's (or, with `kind`, a batch's) webhook from its URL, its fields, or itself."""
    if value is None:
        return None
    if isinstance(value, str):
        return kind(url=value)
    if isinstance(value, Webhook | BatchWebhook):
        return kind.model_validate(value.model_dump())
    return kind.model_validate(value)


def job_request(
    model: str,
    inputs: Mapping[str, Any] | None,
    version: str,
    input_uri: str | None,
    webhook: WebhookSpec,
    metadata: Mapping[str, str] | None,
    ttl_seconds: int | None,
) -> JobRequest:
    """The body of `POST /v1/jobs` from the arguments of `jobs.create`."""
    return JobRequest(
        model=model,
        version=version,
        inputs=None if inputs is None else dict(inputs),
        input_uri=input_uri,
        webhook=webhook_of(webhook, Webhook),
        metadata=dict(metadata or {}),
        ttl_seconds=ttl_seconds,
    )


def bulk_item(item: BulkItem | Mapping[str, Any]) -> BulkItem:
    """An item of a bulk submit: a BulkItem, or the inputs of one job."""
    return item if isinstance(item, BulkItem) else BulkItem(inputs=dict(item))


def create(request: JobRequest, policy: RetryPolicy) -> Flow[JobCreated]:
    """Submit one job under a new Idempotency-Key (every retry reuses it)."""
    key = idempotency_key()
    sent = Request(
        "POST", "/v1/jobs", json=body_of(request), headers={"Idempotency-Key": key},
        resend_unanswered=True,
    )  # fmt: skip
    response = checked((yield from send(sent, policy)))
    # A retry whose first attempt was taken answers 200 with the job as it is now.
    if response.status_code == 200:
        job = Job.model_validate_json(response.content)
        return JobCreated(
            id=job.id,
            status=job.status,
            model=job.model,
            version=job.version,
            created_at=job.created_at,
        )
    return JobCreated.model_validate_json(response.content)


def create_many(
    model: str,
    version: str,
    items: Sequence[BulkItem],
    webhook: Webhook | None,
    ttl_seconds: int | None,
    policy: RetryPolicy,
    chunk: int = MAX_BULK_ITEMS,
) -> Flow[list[str]]:
    """Submit `items` in bulk requests of at most `chunk` items, each under a key of its
    own; emit a Progress after each. Returns the job IDs in item order.

    Each chunk is all or nothing; an error in a later chunk leaves the earlier ones queued
    (the error says how many were).
    """
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, not {chunk}")
    base = idempotency_key()
    ids: list[str] = []
    for n, start in enumerate(range(0, len(items), chunk)):
        body = BulkRequest(
            model=model, version=version, items=list(items[start : start + chunk]),
            webhook=webhook, ttl_seconds=ttl_seconds,
        )  # fmt: skip
        sent = Request(
            "POST", "/v1/jobs/bulk", json=body_of(body),
            headers={"Idempotency-Key": f"{base}-{n}"}, resend_unanswered=True,
        )  # fmt: skip
        created = yield from call(sent, policy, BulkCreated)
        ids.extend(created.ids)
        yield Emit(Progress(len(ids), len(items)))
    return ids


def get(job_id: str, policy: RetryPolicy, wait_s: float = 0) -> Flow[Job]:
    """The job; with `wait_s` (at most MAX_WAIT_S), held until it ends or that passes."""
    params = {"wait": round(min(wait_s, MAX_WAIT_S), 3)} if wait_s > 0 else None
    timeout = None if params is None else min(wait_s, MAX_WAIT_S) + 30
    request = Request(
        "GET", f"/v1/jobs/{job_id}", params=params, timeout=timeout, resend_unanswered=True
    )
    return (yield from call(request, policy, Job))


def wait(job_id: str, policy: RetryPolicy, deadline: float | None) -> Flow[Job]:
    """Long-poll the job until it ends; WaitTimeoutError once `deadline` (time.monotonic())
    passes first."""
    while True:
        left = MAX_WAIT_S if deadline is None else max(0.0, deadline - time.monotonic())
        job = yield from get(job_id, policy, min(left, MAX_WAIT_S))
        if job.done:
            return job
        if deadline is not None and time.monotonic() >= deadline:
            raise WaitTimeoutError(f"job {job_id} is still {job.status}", job)


def events(
    job_id: str,
    policy: RetryPolicy,
    last_event_id: str | None = None,
    deadline: float | None = None,
) -> Flow[None]:
    """Emit the job's events (`job.<status>`, data the job) until its terminal one."""
    path = f"/v1/jobs/{job_id}/events"
    return streams.events(path, policy, last_event_id, _job_ended, deadline)


def wait_streamed(job_id: str, policy: RetryPolicy, deadline: float | None) -> Flow[Job]:
    """Wait for the job on its event stream, emitting the job at each status change;
    WaitTimeoutError once `deadline` (time.monotonic()) passes first."""
    try:
        job = yield from relay(events(job_id, policy, deadline=deadline), _job_of)
    except WaitTimeoutError as e:
        last = None if e.last is None else _job_of(e.last)
        raise WaitTimeoutError(f"job {job_id} has not ended", last) from None
    if job is None:
        raise ValueError(f"the event stream of job {job_id} ended without an event")
    return job


def _job_of(event: Event) -> Job:
    return Job.model_validate(event.data)


def _job_ended(event: Event) -> bool:
    return event.event.removeprefix("job.") in JOB_TERMINAL


class _Tally:
    """Jobs ended so far, counted from several threads or tasks."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.lock = threading.Lock()

    def add(self, job: Job) -> Progress:
        with self.lock:
            self.done += 1
            return Progress(self.done, self.total, job)


def get_many(job_ids: Sequence[str], policy: RetryPolicy, wait_s: float = 0) -> Flow[list[Job]]:
    """The named jobs (at most MAX_IDS) the caller can see, in the order named; with
    `wait_s` (at most MAX_WAIT_S), held until they have all ended or that passes."""
    params: dict[str, str | float | list[str]] = {"id": list(job_ids)}
    if wait_s > 0:
        params["wait"] = round(min(wait_s, MAX_WAIT_S), 3)
    timeout = None if wait_s <= 0 else min(wait_s, MAX_WAIT_S) + 30
    request = Request("GET", "/v1/jobs", params=params, timeout=timeout, resend_unanswered=True)
    page = yield from call(request, policy, JobPage)
    return page.items


def wait_many(
    job_ids: Sequence[str], policy: RetryPolicy, deadline: float | None, concurrency: int
) -> Flow[list[Job]]:
    """Every job, in `job_ids`' order, long-polled MAX_IDS to a request and `concurrency`
    requests at a time; emits a Progress as each ends. NotFoundError names a job the
    caller cannot see; WaitTimeoutError once `deadline` passes first. The newest are
    asked first: when they have ended, most others have too."""
    tally = _Tally(len(job_ids))
    newest_first = list(dict.fromkeys(reversed(job_ids)))
    chunks = [newest_first[i : i + MAX_IDS] for i in range(0, len(newest_first), MAX_IDS)]

    def one(chunk: list[str]) -> Flow[list[Job]]:
        ended: dict[str, Job] = {}
        while True:
            waiting = [i for i in chunk if i not in ended]
            left = MAX_WAIT_S if deadline is None else max(0.0, deadline - time.monotonic())
            found = {j.id: j for j in (yield from get_many(waiting, policy, left))}
            unseen = [i for i in waiting if i not in found]
            if unseen:
                raise NotFoundError(404, title="Not Found", detail=f"no job {unseen[0]!r}")
            for job in found.values():
                if job.done:
                    ended[job.id] = job
                    yield Emit(tally.add(job))
            if len(ended) == len(chunk):
                return list(ended.values())
            if deadline is not None and time.monotonic() >= deadline:
                late = next(j for j in found.values() if not j.done)
                raise WaitTimeoutError(f"job {late.id} is still {late.status}", late)

    done: list[list[Job]] = yield Parallel([one(c) for c in chunks], max(1, concurrency))
    by_id = {job.id: job for group in done for job in group}
    return [by_id[i] for i in job_ids]


def cancel(job_id: str, policy: RetryPolicy) -> Flow[Job]:
    """Cancel a queued job; ConflictError (with `job_status`) if it is running or has ended."""
    return (yield from call(Request("POST", f"/v1/jobs/{job_id}/cancel"), policy, Job))


def deliveries(job_id: str, policy: RetryPolicy) -> Flow[DeliveryList]:
    """Every webhook delivery attempt of the job, oldest first."""
    request = Request("GET", f"/v1/jobs/{job_id}/deliveries", resend_unanswered=True)
    return (yield from call(request, policy, DeliveryList))


def listing(
    policy: RetryPolicy, status: str | None, model: str | None, batch_id: str | None, limit: int
) -> Flow[None]:
    """Emit the caller's jobs, newest first, page after page."""
    filters = {"status": status, "model": model, "batch_id": batch_id}
    params: dict[str, str | int] = {"limit": limit}
    params.update({k: v for k, v in filters.items() if v is not None})
    return streams.pages("/v1/jobs", params, policy, JobPage)
