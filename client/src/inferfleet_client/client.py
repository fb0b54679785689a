"""`Client`: the API over httpx.Client. Each method builds its flow (`flows`) and runs
it; `AsyncClient` (async_client.py) is the same over httpx.AsyncClient."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from inferfleet_client.config import ClientConfig, resolve
from inferfleet_client.drive import SyncDriver
from inferfleet_client.flows import batches, jobs, models
from inferfleet_client.flows.jobs import MAX_BULK_ITEMS, Progress, WebhookSpec
from inferfleet_client.flows.steps import deadline_after
from inferfleet_client.models import (
    Batch,
    BatchProgress,
    BatchResult,
    BatchWebhook,
    BulkItem,
    Delivery,
    Event,
    Job,
    JobCreated,
    Model,
    ModelSummary,
    Webhook,
)
from inferfleet_client.retries import RetryPolicy


class Client:
    """A client of the inferfleet API.

        with Client("http://127.0.0.1:8000", api_key="...") as client:
            job = client.jobs.create("fraud", {"transaction_amount": 12.5, ...})
            print(client.jobs.wait(job.id).outputs)

    `base_url` and `api_key` default to `INFERFLEET_URL` and `INFERFLEET_API_KEY`.
    `retries` bounds how often and how long a request is sent again after 429, 503 or
    a lost connection (submits carry an Idempotency-Key, so a retry never makes a
    second job). The client may be shared between threads.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        retries: RetryPolicy | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        self.config: ClientConfig = resolve(base_url, api_key, timeout_s, retries)
        self._owns_http = http is None
        self.http = http or httpx.Client(limits=httpx.Limits(max_connections=64))
        driver = SyncDriver(self.http, self.config)
        self.jobs = Jobs(driver)
        self.batches = Batches(driver)
        self.models = Models(driver)

    def close(self) -> None:
        """Close the connections (not those of an httpx.Client passed in)."""
        if self._owns_http:
            self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Jobs:
    """`client.jobs`: submit, read, wait for and cancel jobs."""

    def __init__(self, driver: SyncDriver) -> None:
        self._driver = driver
        self._policy = driver.config.retries

    def create(
        self,
        model: str,
        inputs: Mapping[str, Any] | None = None,
        *,
        version: str = "production",
        input_uri: str | None = None,
        webhook: WebhookSpec = None,
        metadata: Mapping[str, str] | None = None,
        ttl_seconds: int | None = None,
    ) -> JobCreated:
        """Submit one job (exactly one of `inputs` and `input_uri`); answers once it is
        queued. Retried under one Idempotency-Key, so it makes one job at most."""
        request = jobs.job_request(
            model, inputs, version, input_uri, webhook, metadata, ttl_seconds
        )
        return self._driver.run(jobs.create(request, self._policy))

    def create_many(
        self,
        model: str,
        items: Iterable[Mapping[str, Any] | BulkItem],
        *,
        version: str = "production",
        webhook: WebhookSpec = None,
        ttl_seconds: int | None = None,
        chunk_size: int = MAX_BULK_ITEMS,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> builtins.list[str]:
        """Submit many jobs of one model version in bulk requests of at most
        `chunk_size` items (each item: the inputs of one job, or a BulkItem); returns
        their IDs in item order. Each request is all or nothing and retried under a key
        of its own."""
        flow = jobs.create_many(
            model, version, [jobs.bulk_item(i) for i in items], jobs.webhook_of(webhook, Webhook),
            ttl_seconds, self._policy, chunk_size,
        )  # fmt: skip
        return self._driver.run(flow, on_progress)

    def get(self, job_id: str) -> Job:
        """The job as it is now."""
        return self._driver.run(jobs.get(job_id, self._policy))

    def wait(
        self,
        job_id: str,
        *,
        timeout_s: float | None = None,
        events: bool = False,
        on_change: Callable[[Job], None] | None = None,
    ) -> Job:
        """The job once it has ended, by long-polling (or, with `events`, on its event
        stream, calling `on_change` at each status change). WaitTimeoutError (with the job as
        last seen) when `timeout_s` passes first."""
        deadline = deadline_after(timeout_s)
        if events:
            return self._driver.run(jobs.wait_streamed(job_id, self._policy, deadline), on_change)
        return self._driver.run(jobs.wait(job_id, self._policy, deadline))

    def wait_many(
        self,
        job_ids: Sequence[str],
        *,
        timeout_s: float | None = None,
        concurrency: int = 32,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> builtins.list[Job]:
        """Every job once it has ended, in `job_ids`' order, long-polled 100 to a request
        (`GET /v1/jobs?id=…&wait=`), `concurrency` requests at a time; `on_progress` hears
        of each as it ends. NotFoundError names a job the key cannot see; WaitTimeoutError
        when `timeout_s` passes first."""
        flow = jobs.wait_many(job_ids, self._policy, deadline_after(timeout_s), concurrency)
        return self._driver.run(flow, on_progress)

    def events(self, job_id: str, *, last_event_id: str | None = None) -> Iterator[Event]:
        """The job's Server-Sent Events until its terminal one, resumed after a cut."""
        return self._driver.iterate(jobs.events(job_id, self._policy, last_event_id))

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued job; ConflictError (with `job_status`) if it is running or ended."""
        return self._driver.run(jobs.cancel(job_id, self._policy))

    def deliveries(self, job_id: str) -> builtins.list[Delivery]:
        """Every webhook delivery attempt of the job, oldest first."""
        return self._driver.run(jobs.deliveries(job_id, self._policy)).items

    def list(
        self,
        *,
        status: str | None = None,
        model: str | None = None,
        batch_id: str | None = None,
        page_size: int = 100,
    ) -> Iterator[Job]:
        """The caller's jobs, newest first, fetched a page at a time as iterated."""
        flow = jobs.listing(self._policy, status, model, batch_id, page_size)
        return self._driver.iterate(flow)


class Batches:
    """`client.batches`: score a file, follow it, read its results."""

    def __init__(self, driver: SyncDriver) -> None:
        self._driver = driver
        self._policy = driver.config.retries

    def create(
        self,
        source: str | Path,
        *,
        model: str,
        version: str = "production",
        output_uri: str | None = None,
        webhook: WebhookSpec = None,
        skip_invalid: bool = False,
        wait: bool = False,
        timeout_s: float | None = None,
        on_upload: Callable[[int, int], None] | None = None,
        on_progress: Callable[[BatchProgress], None] | None = None,
    ) -> Batch:
        """Create a batch from a local JSONL, CSV or Parquet file (uploaded through a
        presigned URL first; `on_upload(sent, total)` hears of its bytes) or an `s3://`
        URI. Returns the batch as it is after the submit, or with `wait` once it ended.
        Retried under one Idempotency-Key, so it makes one batch at most."""
        fields = batches.fields(
            model, version, output_uri, jobs.webhook_of(webhook, BatchWebhook), skip_invalid
        )
        created = self._driver.run(batches.create(source, fields, self._policy, on_upload))
        if wait:
            return self.wait(created.id, timeout_s=timeout_s, on_progress=on_progress)
        return self.get(created.id)

    def get(self, batch_id: str) -> Batch:
        """The batch as it is now."""
        return self._driver.run(batches.get(batch_id, self._policy))

    def wait(
        self,
        batch_id: str,
        *,
        timeout_s: float | None = None,
        on_progress: Callable[[BatchProgress], None] | None = None,
    ) -> BatchProgress:
        """The batch once it has ended, followed on its event stream (or by polling a
        server without one); `on_progress` hears of its counts as they move. WaitTimeoutError
        when `timeout_s` passes first."""
        flow = batches.follow(batch_id, self._policy, deadline_after(timeout_s))
        return self._driver.run(flow, on_progress)

    def watch(self, batch_id: str, *, timeout_s: float | None = None) -> Iterator[BatchProgress]:
        """The batch at each change, until it has ended."""
        flow = batches.follow(batch_id, self._policy, deadline_after(timeout_s))
        return self._driver.iterate(flow)

    def events(self, batch_id: str, *, last_event_id: str | None = None) -> Iterator[Event]:
        """The batch's Server-Sent Events until its terminal one, resumed after a cut."""
        return self._driver.iterate(batches.events(batch_id, self._policy, last_event_id))

    def cancel(self, batch_id: str) -> Batch:
        """Cancel the batch's queued jobs."""
        return self._driver.run(batches.cancel(batch_id, self._policy))

    def results(self, batch: Batch | str) -> Iterator[BatchResult]:
        """Each line of the batch's results file, in input order, streamed."""
        return self._driver.iterate(batches.results(batch, self._policy))

    def list(
        self, *, status: str | None = None, model: str | None = None, page_size: int = 100
    ) -> Iterator[Batch]:
        """The caller's batches, newest first, fetched a page at a time as iterated."""
        return self._driver.iterate(batches.listing(self._policy, status, model, page_size))


class Models:
    """`client.models` (admin keys): the registry, read."""

    def __init__(self, driver: SyncDriver) -> None:
        self._driver = driver
        self._policy = driver.config.retries

    def list(self) -> builtins.list[ModelSummary]:
        """Every model, its aliases and its latest version."""
        return self._driver.run(models.listing(self._policy)).items

    def get(self, name: str) -> Model:
        """A model's versions (request and output schemas included) and its aliases."""
        return self._driver.run(models.get(name, self._policy))
