"""Flows of `/v1/batches` and `/v1/uploads`: create from a local file (uploaded through a
presigned PUT) or an S3 URI, read, wait, watch, results."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from inferfleet_client.errors import NotFoundError, WaitTimeoutError
from inferfleet_client.flows import streams
from inferfleet_client.flows.steps import (
    Emit,
    FileBody,
    Flow,
    Request,
    Sleep,
    body_of,
    call,
    checked,
    idempotency_key,
    relay,
    send,
)
from inferfleet_client.models import (
    BATCH_TERMINAL,
    Batch,
    BatchCreated,
    BatchPage,
    BatchProgress,
    BatchRequest,
    BatchResult,
    BatchWebhook,
    Event,
    Upload,
    UploadRequest,
)
from inferfleet_client.retries import RetryPolicy

POLL_S = 1.0  # between reads of a batch followed without its event stream


def upload_name(path: Path) -> str:
    """`path`'s file name as the uploads route accepts it (letters, digits, `.`, `_`,
    `-`; not starting with a dot): anything else becomes `_`."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", path.name).lstrip(".")
    return name or "input"


def default_output(input_uri: str, uploaded: bool) -> str:
    """Where results go when the caller names no folder: beside an uploaded file (its
    folder is the upload's own), or `<input without extension>-results/`."""
    if uploaded:
        return input_uri.rsplit("/", 1)[0] + "/results/"
    return input_uri.rsplit(".", 1)[0] + "-results/"


def fields(
    model: str,
    version: str,
    output_uri: str | None,
    webhook: BatchWebhook | None,
    skip_invalid: bool,
) -> dict[str, Any]:
    """The fields of `POST /v1/batches` besides the input (`output_uri` None: the default)."""
    return {
        "model": model,
        "version": version,
        "output_uri": output_uri,
        "webhook": webhook,
        "skip_invalid": skip_invalid,
    }


def upload(
    path: Path, policy: RetryPolicy, progress: Callable[[int, int], None] | None
) -> Flow[str]:
    """Upload a local file through `POST /v1/uploads` and its presigned PUT; the `s3://`
    URI it now has."""
    size = path.stat().st_size
    target = yield from call(
        Request(
            "POST", "/v1/uploads", json=body_of(UploadRequest(filename=upload_name(path))),
            resend_unanswered=True,
        ),
        policy,
        Upload,
    )  # fmt: skip
    put = Request(
        "PUT", target.upload_url, headers={"Content-Length": str(size)},
        body=FileBody(path, size, progress), external=True, resend_unanswered=True,
    )  # fmt: skip
    checked((yield from send(put, policy)))
    return target.uri


def create(
    source: str | Path,
    request: dict[str, Any],
    policy: RetryPolicy,
    progress: Callable[[int, int], None] | None = None,
) -> Flow[BatchCreated]:
    """Create a batch of `source`, a local file (uploaded first) or an `s3://` URI.

    `request` holds the other fields of `POST /v1/batches` (`output_uri` may be None:
    `default_output`). The submit carries a new Idempotency-Key that its retries reuse.
    """
    text = str(source)
    uploaded = not text.startswith("s3://")
    input_uri = (yield from upload(Path(text), policy, progress)) if uploaded else text
    output_uri = request.get("output_uri") or default_output(input_uri, uploaded)
    body = BatchRequest.model_validate(
        {**request, "input_uri": input_uri, "output_uri": output_uri}
    )
    sent = Request(
        "POST", "/v1/batches", json=body_of(body), headers={"Idempotency-Key": idempotency_key()},
        resend_unanswered=True,
    )  # fmt: skip
    # 202 {"id", "status"}, or 200 with the batch when a retry's first attempt was taken.
    return (yield from call(sent, policy, BatchCreated))


def get(batch_id: str, policy: RetryPolicy) -> Flow[Batch]:
    """The batch as it is now."""
    request = Request("GET", f"/v1/batches/{batch_id}", resend_unanswered=True)
    return (yield from call(request, policy, Batch))


def watch(batch_id: str, policy: RetryPolicy, deadline: float | None) -> Flow[Batch]:
    """Read the batch every POLL_S, emitting it whenever it changed, until it ends;
    WaitTimeoutError once `deadline` (time.monotonic()) passes first."""
    seen: Batch | None = None
    while True:
        batch = yield from get(batch_id, policy)
        if batch != seen:
            yield Emit(batch)
            seen = batch
        if batch.done:
            return batch
        if deadline is not None and time.monotonic() >= deadline:
            raise WaitTimeoutError(f"batch {batch_id} is still {batch.status}", batch)
        yield Sleep(POLL_S)


def events(
    batch_id: str,
    policy: RetryPolicy,
    last_event_id: str | None = None,
    deadline: float | None = None,
) -> Flow[None]:
    """Emit the batch's events (`batch.progress`, then its terminal one) until it ends."""
    path = f"/v1/batches/{batch_id}/events"
    return streams.events(path, policy, last_event_id, _batch_ended, deadline)


def follow(batch_id: str, policy: RetryPolicy, deadline: float | None) -> Flow[BatchProgress]:
    """Emit the batch as it progresses until it ends, and return it ended: from its event
    stream (counts and the server's completion estimate), or, from a server without
    event streams, by reading it every POLL_S. WaitTimeoutError once `deadline` passes."""
    try:
        batch = yield from relay(events(batch_id, policy, deadline=deadline), _progress_of)
    except WaitTimeoutError as e:
        last = None if e.last is None else _progress_of(e.last)
        raise WaitTimeoutError(f"batch {batch_id} has not ended", last) from None
    except NotFoundError:
        # No event stream here (an older server): the batch itself answers, or says 404.
        polled = yield from relay(watch(batch_id, policy, deadline), _progress_from_batch)
        batch = polled
    if batch is None:
        raise ValueError(f"the event stream of batch {batch_id} ended without an event")
    return batch


def _progress_of(event: Event) -> BatchProgress:
    return BatchProgress.model_validate(event.data)


def _progress_from_batch(batch: Batch) -> BatchProgress:
    return BatchProgress.model_validate(batch.model_dump())


def _batch_ended(event: Event) -> bool:
    return event.event.removeprefix("batch.") in BATCH_TERMINAL


def cancel(batch_id: str, policy: RetryPolicy) -> Flow[Batch]:
    """Cancel the batch's queued jobs; ConflictError (with `batch_status`) once it has ended."""
    return (yield from call(Request("POST", f"/v1/batches/{batch_id}/cancel"), policy, Batch))


def results(batch: Batch | str, policy: RetryPolicy) -> Flow[None]:
    """Emit each line of the batch's results file, in input order, streamed from its
    presigned `output_url` (the batch is read first when given by ID)."""
    if isinstance(batch, str):
        batch = yield from get(batch, policy)
    if not batch.output_url:
        raise ValueError(f"batch {batch.id} is {batch.status} and has no results file yet")
    yield from relay(streams.lines(batch.output_url, policy, external=True), _result_of)


def _result_of(line: str) -> BatchResult:
    return BatchResult.model_validate_json(line)


def listing(policy: RetryPolicy, status: str | None, model: str | None, limit: int) -> Flow[None]:
    """Emit the caller's batches, newest first, page after page."""
    filters = {"status": status, "model": model}
    params: dict[str, str | int] = {"limit": limit}
    params.update({k: v for k, v in filters.items() if v is not None})
    return streams.pages("/v1/batches", params, policy, BatchPage)
