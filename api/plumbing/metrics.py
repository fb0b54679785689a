"""The API's Prometheus metrics, in a registry of their own passed to whoever counts.

Besides its own counters the API reports the webhook backlog (`watch_outbox`), read from
the outbox when Prometheus scrapes: the API always runs, whereas the dispatcher's Celery
processes serve no HTTP. Every replica reports the same values; take `max`.

Several processes (`inferfleet api --workers N`) share one port, so a scrape reaches
one of them at random. They run in prometheus-client's multiprocess mode: the command
sets `PROMETHEUS_MULTIPROC_DIR` before it starts them, each process keeps its values in
files there, and `/metrics` answers from every process's files (counters and
histograms summed; the fallback gauge the largest of the processes still running).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from inferfleet.buildinfo import register_build_info

log = logging.getLogger(__name__)

# Pending attempts are few and the partial index webhook_attempts_due holds exactly them.
OUTBOX_BACKLOG = text(
    """
    SELECT count(*) FILTER (WHERE due_at <= now()) AS due,
           count(*) FILTER (WHERE due_at > now()) AS scheduled,
           coalesce(extract(epoch FROM now() - min(due_at) FILTER (WHERE due_at <= now())), 0)
               AS oldest_due_s
      FROM webhook_attempts
     WHERE state = 'pending'
    """
)
OUTBOX_CACHE_S = 5.0
# Request durations: a cached GET answers in about a millisecond, a long poll holds up
# to its `wait` (60 s at most).
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# prometheus-client reads this variable when it is imported: set, every value lives in a
# file of that folder, one file per process and kind of metric.
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> Path | None:
    """The folder of the processes' metric files when this process is one of several
    (`inferfleet api --workers N` sets it for them); None when it serves alone."""
    value = os.environ.get(MULTIPROCESS_ENV)
    return Path(value) if value else None


class ApiMetrics:
    """Counters and histograms of the submission path; labels are bounded (no job IDs).

    Code counts on the metrics of `registry`; `exposition()` is what /metrics answers:
    this process's registry, or with `multiprocess` (the folder of `multiprocess_dir`)
    every process's values from their files.
    """

    def __init__(self, multiprocess: Path | None = None) -> None:
        self.registry = CollectorRegistry()
        self.multiprocess = multiprocess
        if multiprocess is None:
            self._exposed = self.registry
        else:
            self._exposed = CollectorRegistry()
            # prometheus-client leaves its multiprocess functions unannotated.
            MultiProcessCollector(self._exposed, path=str(multiprocess))  # type: ignore[no-untyped-call]
        self.jobs_submitted = Counter(
            "inferfleet_api_jobs_submitted_total",
            "Jobs accepted and put on the queue.",
            ["model"],
            registry=self.registry,
        )
        self.jobs_rejected = Counter(
            "inferfleet_api_jobs_rejected_total",
            "Submissions refused, by reason (invalid, queue_unavailable, backlog).",
            ["reason"],
            registry=self.registry,
        )
        self.jobs_cancelled = Counter(
            "inferfleet_api_jobs_cancelled_total",
            "Queued jobs cancelled through the API.",
            ["model"],
            registry=self.registry,
        )
        self.requests_refused = Counter(
            "inferfleet_api_requests_refused_total",
            "Requests refused after auth, before their route: too_large (413), rate_limited "
            "(429), body_shape (422, unparsed), body_slots_busy (503).",
            ["reason"],
            registry=self.registry,
        )
        self.produce_seconds = Histogram(
            "inferfleet_api_produce_duration_seconds",
            "Time for Kafka to acknowledge the messages of one group of submissions.",
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.rate_limit_fallback = Gauge(
            "inferfleet_api_rate_limit_fallback",
            "1 while rate limits are counted in this process because Redis does not answer "
            "(with several processes: in any of them).",
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.long_polls = Gauge(
            "inferfleet_api_long_poll_requests",
            "Requests held waiting for their job to end (`GET /v1/jobs/{id}?wait=`).",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.rate_limit_fallbacks = Counter(
            "inferfleet_api_rate_limit_fallbacks_total",
            "Times Redis stopped answering and rate limits moved into this process.",
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "inferfleet_api_request_duration_seconds",
            "Time from a request's arrival to the end of its response, by method, route "
            "template (`/v1/jobs/{job_id}`; `unmatched` for paths no route serves) and "
            "status code. Streams (`/events`) count until they close.",
            ["method", "route", "status"],
            registry=self.registry,
            buckets=REQUEST_BUCKETS,
        )
        register_build_info(self.registry)

    def watch_outbox(self, engine: Engine) -> None:
        """Report the webhook backlog of the outbox in `engine` on every scrape."""
        self._exposed.register(OutboxCollector(lambda: outbox_backlog(engine)))

    def exposition(self) -> bytes:
        """The Prometheus text of every metric, as /metrics answers it."""
        if self.multiprocess is not None:
            forget_dead_processes(self.multiprocess)
        return generate_latest(self._exposed)

    def close(self) -> None:
        """This process is ending: with several processes, its live gauges leave the
        exposition (its counters stay in the sums)."""
        if self.multiprocess is not None:
            mark_process_dead(os.getpid(), str(self.multiprocess))  # type: ignore[no-untyped-call]


def forget_dead_processes(folder: Path) -> None:
    """Drop the live gauges of processes that ended without `close` (killed, say, and
    replaced by the server's supervisor), so their last values do not linger."""
    pids = {int(f.stem.rsplit("_", 1)[1]) for f in folder.glob("gauge_live*_*.db")}
    for pid in pids - {os.getpid()}:
        if not process_runs(pid):
            mark_process_dead(pid, str(folder))  # type: ignore[no-untyped-call]


def process_runs(pid: int) -> bool:
    """Whether a process `pid` exists (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


@dataclass(frozen=True)
class OutboxBacklog:
    """Pending webhook attempts: due now, scheduled later (backoff or leased), and how
    long the oldest due one has waited."""

    due: int
    scheduled: int
    oldest_due_s: float


def outbox_backlog(engine: Engine) -> OutboxBacklog:
    with engine.connect() as conn:
        row = conn.execute(OUTBOX_BACKLOG).one()
    return OutboxBacklog(int(row.due), int(row.scheduled), float(row.oldest_due_s))


def backlog_families(backlog: OutboxBacklog | None) -> list[GaugeMetricFamily]:
    """The backlog's metric families; without a backlog, the families with no samples."""
    pending = GaugeMetricFamily(
        "inferfleet_webhook_pending_attempts",
        "Webhook attempts waiting in the outbox: due (the dispatcher's backlog) or "
        "scheduled (a retry's backoff, or leased by a dispatcher).",
        labels=["state"],
    )
    oldest = GaugeMetricFamily(
        "inferfleet_webhook_oldest_due_age_seconds",
        "How long the oldest due webhook attempt has waited for a dispatcher; 0 when none.",
    )
    if backlog is not None:
        pending.add_metric(["due"], backlog.due)
        pending.add_metric(["scheduled"], backlog.scheduled)
        oldest.add_metric([], backlog.oldest_due_s)
    return [pending, oldest]


class OutboxCollector(Collector):
    """Reads the outbox at most once per `OUTBOX_CACHE_S`, however often it is scraped.

    While Postgres does not answer the families are reported without samples (a warning
    is logged), so no stale backlog is scraped.
    """

    def __init__(
        self,
        measure: Callable[[], OutboxBacklog],
        cache_s: float = OUTBOX_CACHE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._measure = measure
        self._cache_s = cache_s
        self._clock = clock
        self._lock = threading.Lock()
        self._at = -float("inf")
        self._last: OutboxBacklog | None = None

    def describe(self) -> list[Metric]:
        # Registration asks for the names; answering from here keeps it off the database.
        return list(backlog_families(None))

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            now = self._clock()
            if now - self._at >= self._cache_s:
                self._at = now
                try:
                    self._last = self._measure()
                except SQLAlchemyError as e:
                    log.warning("cannot read the webhook backlog: %s", type(e).__name__)
                    self._last = None
            families = backlog_families(self._last)
        yield from families
