"""The scheduler's metrics: sweep counts and webhook delivery attempts, kept in Redis.

Celery's prefork pool runs tasks in child processes, whose own metrics no server could
read, and the dispatcher's threads live in those children too. So every process adds its
counts to Redis hashes (`Counts`), and each scheduler worker's main process serves them
on `/metrics` when `INFERFLEET_SCHEDULER_METRICS_PORT` is set (`serve`). The totals are
the fleet's: every scheduler process reports the same values, so aggregate with `max`.

Each counter counts one kind of thing, so a sum over its labels means something:
`inferfleet_sweep_jobs_total{action}` (reproduced, reproduced_stale, expired),
`inferfleet_sweep_partitions_total{action}` (created, dropped: days of jobs and webhook
rows), `inferfleet_sweep_batches_deleted_total`,
`inferfleet_sweep_idempotency_keys_deleted_total`,
`inferfleet_webhook_delivery_attempts_total{outcome}` (`scheduler.dispatch.OUTCOMES`).

The retention sweep also sets gauges (the last run's view, `Counts.set`): the spans
past the retention held back by a straggler and the age of the oldest, and the rows
in each table's default partition (`scheduler.partitions`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import redis
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from inferfleet.buildinfo import register_build_info
from inferfleet.settings import Settings
from scheduler.dispatch import OUTCOMES

log = logging.getLogger(__name__)

TOTALS_KEY = "inferfleet:sweeps:totals"
LAST_RUN_KEY = "inferfleet:sweeps:last_run"
DELIVERIES_KEY = "inferfleet:webhooks:attempts"
GAUGES_KEY = "inferfleet:sweeps:gauges"
# What a sweep reports (its counts' keys, kept in TOTALS_KEY) and the series each one
# is: (metric, label value or None).
SWEPT: dict[str, tuple[str, str | None]] = {
    "jobs_reproduced": ("inferfleet_sweep_jobs", "reproduced"),
    "jobs_reproduced_stale": ("inferfleet_sweep_jobs", "reproduced_stale"),
    "jobs_expired": ("inferfleet_sweep_jobs", "expired"),
    "partitions_created": ("inferfleet_sweep_partitions", "created"),
    "partitions_dropped": ("inferfleet_sweep_partitions", "dropped"),
    "batches_deleted": ("inferfleet_sweep_batches_deleted", None),
    "idempotency_keys_deleted": ("inferfleet_sweep_idempotency_keys_deleted", None),
}
SWEEPS = ("unproduced", "stale", "expiry", "retention", "partitions")
HELD = "partitions_held"
HELD_AGE = "oldest_held_partition_age_seconds"
DEFAULT_ROWS = "default_rows:"  # + table name


@dataclass(frozen=True)
class Totals:
    """The fleet's counts as read from Redis: sweep counts by key, each sweep's last
    run (unix seconds), delivery attempts by outcome."""

    swept: Mapping[str, float] = field(default_factory=dict)
    last_run: Mapping[str, float] = field(default_factory=dict)
    attempts: Mapping[str, float] = field(default_factory=dict)
    gauges: Mapping[str, float] = field(default_factory=dict)


class Counts:
    """Counts kept in Redis, shared by every scheduler process (module docstring).

    A Redis that does not answer loses the counts it was handed (logged): counting
    never fails a sweep or a delivery.
    """

    def __init__(self, redis_url: str) -> None:
        self._url = redis_url
        self._redis: redis.Redis | None = None

    def client(self) -> redis.Redis:
        if self._redis is None:
            self._redis = redis.Redis.from_url(self._url, socket_timeout=2)
        return self._redis

    def add(self, sweep: str, counts: Mapping[str, int]) -> None:
        """Add one sweep run's counts (keys of SWEPT) and mark when it finished."""
        try:
            pipe = self.client().pipeline()
            for what, n in counts.items():
                pipe.hincrby(TOTALS_KEY, what, n)
            pipe.hset(LAST_RUN_KEY, sweep, str(time.time()))
            pipe.execute()
        except redis.RedisError as e:
            log.warning("could not record the counts of sweep %s %s: %s", sweep, counts, e)

    def set(self, gauges: Mapping[str, float]) -> None:
        """Replace gauges (HELD, HELD_AGE, DEFAULT_ROWS + table) with a run's values."""
        try:
            self.client().hset(GAUGES_KEY, mapping={k: str(v) for k, v in gauges.items()})
        except redis.RedisError as e:
            log.warning("could not record the sweep gauges %s: %s", gauges, e)

    def attempt(self, outcome: str) -> None:
        """Count one webhook delivery attempt that ended with `outcome`."""
        try:
            self.client().hincrby(DELIVERIES_KEY, outcome, 1)
        except redis.RedisError as e:
            log.warning("could not count a webhook attempt (%s): %s", outcome, e)

    def read(self) -> Totals:
        """Every total; redis.RedisError if Redis does not answer."""
        client = self.client()
        return Totals(
            swept=_floats(client.hgetall(TOTALS_KEY)),
            last_run=_floats(client.hgetall(LAST_RUN_KEY)),
            attempts=_floats(client.hgetall(DELIVERIES_KEY)),
            gauges=_floats(client.hgetall(GAUGES_KEY)),
        )


def families(totals: Totals | None) -> list[Metric]:
    """The metric families of `totals`; without totals, the families with no samples."""
    made = {
        "inferfleet_sweep_jobs": CounterMetricFamily(
            "inferfleet_sweep_jobs",
            "Jobs the sweeps handled, by action: reproduced (their message never left), "
            "reproduced_stale (produced, but no worker claimed them after the group passed "
            "them), expired (queued past their deadline)",
            labels=["action"],
        ),
        "inferfleet_sweep_partitions": CounterMetricFamily(
            "inferfleet_sweep_partitions",
            "Day partitions of jobs, webhook events and attempts (one per day for the "
            "three tables), by action: created (ahead of their day), dropped (past the "
            "retention, with their batches and system-written objects)",
            labels=["action"],
        ),
        "inferfleet_sweep_batches_deleted": CounterMetricFamily(
            "inferfleet_sweep_batches_deleted",
            "Finished batches the retention sweep deleted",
        ),
        "inferfleet_sweep_idempotency_keys_deleted": CounterMetricFamily(
            "inferfleet_sweep_idempotency_keys_deleted",
            "Idempotency keys the retention sweep deleted",
        ),
    }
    runs = GaugeMetricFamily(
        "inferfleet_sweep_last_run_timestamp_seconds",
        "When each sweep last finished a run (unix seconds)",
        labels=["sweep"],
    )
    held = GaugeMetricFamily(
        "inferfleet_sweep_partitions_held",
        "Day partitions past the retention that the last retention run kept because "
        "a job in them is open or finished lately, or a batch of theirs is kept",
    )
    held_age = GaugeMetricFamily(
        "inferfleet_sweep_oldest_held_partition_age_seconds",
        "How long ago the oldest held partition's day ended (0: none held)",
    )
    default_rows = GaugeMetricFamily(
        "inferfleet_partition_default_rows",
        "Rows in a table's default partition (keys of a day no partition covers; "
        "never dropped by the retention), as the last retention run counted them",
        labels=["table"],
    )
    attempts = CounterMetricFamily(
        "inferfleet_webhook_delivery_attempts",
        "Webhook delivery attempts made, by outcome: delivered (2xx), retry (failed, "
        "tried again later), failed (failed for good), refused (the target's address "
        "was refused; tried again or failed like any failure), superseded (another "
        "dispatcher recorded the attempt first)",
        labels=["outcome"],
    )
    if totals is not None:
        for what, (name, label) in SWEPT.items():
            made[name].add_metric([label] if label else [], totals.swept.get(what, 0.0))
        for sweep in SWEEPS:
            if sweep in totals.last_run:
                runs.add_metric([sweep], totals.last_run[sweep])
        for outcome in OUTCOMES:
            attempts.add_metric([outcome], totals.attempts.get(outcome, 0.0))
        if HELD in totals.gauges:
            held.add_metric([], totals.gauges[HELD])
            held_age.add_metric([], totals.gauges.get(HELD_AGE, 0.0))
        for key, value in sorted(totals.gauges.items()):
            if key.startswith(DEFAULT_ROWS):
                default_rows.add_metric([key.removeprefix(DEFAULT_ROWS)], value)
    return [*made.values(), runs, held, held_age, default_rows, attempts]


class SchedulerCollector(Collector):
    """Reads the totals (`read`, Counts.read in service) at each scrape; while Redis does
    not answer, the families have no samples (a warning is logged)."""

    def __init__(self, read: Callable[[], Totals]) -> None:
        self._read = read

    def describe(self) -> list[Metric]:
        return families(None)

    def collect(self) -> Iterator[Metric]:
        try:
            totals: Totals | None = self._read()
        except redis.RedisError as e:
            log.warning("cannot read the scheduler's counts from Redis: %s", e)
            totals = None
        yield from families(totals)


def scheduler_registry(read: Callable[[], Totals]) -> CollectorRegistry:
    """What the scheduler's `/metrics` serves: the counts and `inferfleet_build_info`."""
    registry = CollectorRegistry()
    registry.register(SchedulerCollector(read))
    register_build_info(registry)
    return registry


def serve(settings: Settings, counts: Counts) -> None:
    """Serve `/metrics` on `scheduler_metrics_host:port` from a thread of this process."""
    registry = scheduler_registry(counts.read)
    start_http_server(settings.scheduler_metrics_port, settings.scheduler_metrics_host, registry)
    log.info(
        "scheduler metrics on http://%s:%d/metrics",
        settings.scheduler_metrics_host,
        settings.scheduler_metrics_port,
    )


def _floats(found: Any) -> dict[str, float]:
    """A Redis hash of numbers, as read by the synchronous client."""
    return {k.decode(): float(v) for k, v in cast(dict[bytes, bytes], found).items()}
