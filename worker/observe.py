"""What the worker loop tells as it goes: the loop calls a `BatchObserver`'s hooks at
each step (as dramatiq calls its middleware), and `BatchLog`, the observer it runs
with, turns them into log lines and Prometheus metrics. The loop itself keeps no counts
and no metrics, and writes no line about a batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from inferfleet.clients.topics import lane_of
from inferfleet.jobs.messages import JobMessage
from worker import logs
from worker.metrics import WorkerMetrics, observe_all
from worker.plan import Plan
from worker.summary import BatchSummary, Handled, job_counts

log = logging.getLogger(__name__)


class BatchObserver(Protocol):
    """The hooks the worker loop calls while it handles one batch, in this order."""

    def batch_started(self, records: Sequence[Any]) -> None:
        """A poll returned these records."""

    def planned(self, plan: Plan) -> None:
        """The batch was decoded and claimed: `plan` says what becomes of each job."""

    def inference(self, model: str, version: int) -> AbstractContextManager[Any]:
        """Wraps the runtime calls of one (model, version) group."""

    def version_unavailable(self, model: str, version: int, error: Exception) -> None:
        """A version the batch's jobs name cannot be loaded: they fail naming it."""

    def job_failed(self, job: JobMessage, error: Mapping[str, str]) -> None:
        """The runtime failed one job (it is retried while it has attempts left)."""

    def batch_done(self, batch: Handled, summary: BatchSummary) -> None:
        """Every record of the batch was handled and its offsets committed."""


@dataclass(frozen=True)
class _Batch:
    """What `BatchLog` keeps of a batch between its start and its end."""

    started: float
    topics: Counter[str]
    lane: str | None
    lanes: dict[bytes | None, str]


class BatchLog:
    """The observer that logs each batch and measures it as Prometheus metrics."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self.metrics = metrics
        # The batch in hand, per thread: the pipeline runs one on each lane's thread.
        self._local = threading.local()

    def batch_started(self, records: Sequence[Any]) -> None:
        topics = Counter(r.topic for r in records)
        # The lane of each job, for its latency: the batch's one lane (the usual case),
        # or else by record key, which is the job ID.
        lanes = {lane_of(t) for t in topics}
        lane = next(iter(lanes)) if len(lanes) == 1 else None
        by_key = {} if lane else {r.key: lane_of(r.topic) for r in records}
        self._local.batch = _Batch(time.monotonic(), topics, lane, by_key)

    def planned(self, plan: Plan) -> None:
        for p in plan.dead_letter:
            log.warning(
                "dead-lettering undecodable record topic=%s partition=%d offset=%d: %s",
                p.topic,
                p.partition,
                p.offset,
                p.error,
            )

    def inference(self, model: str, version: int) -> AbstractContextManager[Any]:
        return self.metrics.inference_seconds.labels(model, str(version)).time()

    def version_unavailable(self, model: str, version: int, error: Exception) -> None:
        log.error("model=%s version=%d unavailable: %r", model, version, error)

    def job_failed(self, job: JobMessage, error: Mapping[str, str]) -> None:
        log.warning("inference failed: %s", error["message"], extra=logs.job_fields(job))

    def batch_done(self, batch: Handled, summary: BatchSummary) -> None:
        for job in batch.plan.expired:
            log.info("expired before it started", extra=logs.job_fields(job))
        for (model, status), n in job_counts(batch).items():
            self.metrics.jobs.labels(model, status).inc(n)
        current: _Batch = self._local.batch
        self._observe_latency(batch, current)
        for topic, n in current.topics.items():
            self.metrics.consumed_records.labels(topic).inc(n)
        elapsed = time.monotonic() - current.started
        self.metrics.dead_letters.inc(summary.dead_lettered)
        self.metrics.batch_records.observe(summary.records)
        self.metrics.batch_seconds.observe(elapsed)
        log.info(
            "batch records=%d claimed=%d succeeded=%d failed=%d retried=%d expired=%d "
            "skipped=%d dead_lettered=%d redelivered=%d written=%d seconds=%.3f",
            summary.records,
            summary.claimed,
            summary.succeeded,
            summary.failed,
            summary.retried,
            summary.expired,
            summary.skipped,
            summary.dead_lettered,
            len(batch.plan.redelivered),
            batch.written,
            elapsed,
        )

    def _observe_latency(self, batch: Handled, current: _Batch) -> None:
        """Submit-to-result time of each job whose final result the batch wrote."""
        now = time.time()
        by_id = {j.job_id: j for j in batch.plan.claimable}
        waited: defaultdict[tuple[str, str], list[float]] = defaultdict(list)
        for outcome in batch.final:
            job = by_id[outcome.job_id]
            lane = current.lane or current.lanes.get(job.job_id.encode(), "unknown")
            waited[(job.model, lane)].append(now - job.enqueued_at.timestamp())
        for (model, lane), seconds in waited.items():
            observe_all(self.metrics.submit_to_result_seconds.labels(model, lane), seconds)
