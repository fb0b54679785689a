"""The worker's Prometheus metrics, in a registry of their own, and the queue probe.

The probe (`QueueProbe`) measures, every `QUEUE_PROBE_INTERVAL_S` in a thread of its own
with Kafka clients of its own, what the batch loop cannot see: the whole consumer group's
lag on each served topic, the age of the oldest record the group has not committed, the
rate at which the group commits, and from those the time the backlog needs to drain
(the rate itself is not exported: each worker counts the records it commits in
`inferfleet_worker_consumed_records_total`, and PromQL's `rate` sums them).
Every replica measures the same group, so dashboards take `max by (topic)`, never a sum.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from kafka import TopicPartition
from kafka.errors import KafkaError
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from inferfleet.buildinfo import register_build_info
from inferfleet.clients.grouplag import (
    GroupClients,
    lag,
    read_offsets,
    resume_offsets,
    timestamps_at,
)
from inferfleet.clients.topics import model_topics
from inferfleet.settings import Settings
from worker.health import model_loaded_gauge

log = logging.getLogger(__name__)

BATCH_BUCKETS = (1, 8, 32, 128, 512, 1024, 2048, 4096, 8192, 16384)
# Submit to result: interactive jobs in well under a second, batch lanes in minutes.
LATENCY_BUCKETS = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600,
)  # fmt: skip
QUEUE_PROBE_INTERVAL_S = 15.0  # KEDA's pollingInterval in keda/: the same view, as often
RATE_WINDOW_S = 60.0
KAFKA_TIMEOUT_MS = 5000
PEEK_TIMEOUT_S = 2.0  # how long one probe may wait for the oldest records


class WorkerMetrics:
    """What a batch did and how long it took, and what the queue holds.

    Labels are bounded: model, version, provider, topic (the served models' topics).
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.batch_records = Histogram(
            "inferfleet_worker_batch_records",
            "Records per polled batch.",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "inferfleet_worker_batch_duration_seconds",
            "Claim-to-written time of one batch on the execution thread (the next batch is "
            "polled and decoded meanwhile).",
            registry=self.registry,
        )
        self.handoff_batches = Gauge(
            "inferfleet_worker_handoff_batches",
            "Batches polled and decoded that wait for the execution thread.",
            registry=self.registry,
        )
        self.inference_seconds = Histogram(
            "inferfleet_worker_inference_duration_seconds",
            "ONNX Runtime time of one (model, version) group.",
            ["model", "version"],
            registry=self.registry,
        )
        self.jobs = Counter(
            "inferfleet_worker_jobs_total",
            "Jobs ended by this worker, by terminal status.",
            ["model", "status"],
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "inferfleet_worker_dead_letter_records_total",
            "Records copied to a dead-letter topic: undecodable ones, jobs that failed for good.",
            registry=self.registry,
        )
        self.model_loaded = model_loaded_gauge(self.registry)
        self.consumer_lag = Gauge(
            "inferfleet_worker_consumer_lag_records",
            "Records on the topic that the worker group has not committed (the whole group's "
            "lag, as KEDA sees it).",
            ["topic"],
            registry=self.registry,
        )
        self.oldest_unconsumed_age = Gauge(
            "inferfleet_worker_oldest_unconsumed_age_seconds",
            "Age of the oldest record on the topic that the group has not committed; 0 when "
            "none waits.",
            ["topic"],
            registry=self.registry,
        )
        self.drain_seconds = Gauge(
            "inferfleet_worker_drain_time_seconds",
            "Estimated time to drain the topic: its lag over the group's measured rate; "
            "+Inf while records wait and none are consumed.",
            ["topic"],
            registry=self.registry,
        )
        self.probe_errors = Counter(
            "inferfleet_worker_queue_probe_errors_total",
            "Queue measurements that failed because Kafka did not answer.",
            registry=self.registry,
        )
        self.consumed_records = Counter(
            "inferfleet_worker_consumed_records_total",
            "Records this worker handled and committed, by topic (the group's throughput is "
            "the sum of their rates).",
            ["topic"],
            registry=self.registry,
        )
        self.submit_to_result_seconds = Histogram(
            "inferfleet_worker_submit_to_result_seconds",
            "Time from a job's submission (its created_at) to the worker writing its "
            "final result, succeeded or failed, by model and lane.",
            ["model", "lane"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        register_build_info(self.registry)


def observe_all(histogram: Histogram, amounts: Sequence[float]) -> None:
    """`histogram.observe(a)` for every amount in `amounts`, at one increment per bucket.

    A batch ends thousands of jobs at once and `observe` scans the buckets one amount at a
    time (over 1 µs a job); this places all of them with one `searchsorted`. It updates
    the same values `observe` does (the bucket an amount falls in, and the sum), which
    are prometheus-client's own attributes: tests/unit/test_worker_metrics.py checks the
    result against `observe`, so a release that changes them fails there.
    """
    if not amounts:
        return
    bounds: list[float] = histogram._upper_bounds
    found = np.searchsorted(np.asarray(bounds), np.asarray(amounts, dtype=float), side="left")
    histogram._sum.inc(float(np.sum(amounts)))
    for i, n in enumerate(np.bincount(found, minlength=len(bounds)).tolist()):
        if n:
            histogram._buckets[i].inc(n)


class Throughput:
    """The rate at which a group consumes a topic, from how its resume offsets advance.

    `add` takes the sum of the topic's resume offsets at a time; `rate` is their increase
    per second over the samples of the last `window_s`. Offsets that go back (a topic
    recreated, offsets reset) start the window again.
    """

    def __init__(self, window_s: float = RATE_WINDOW_S) -> None:
        self._window_s = window_s
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, at: float, consumed: int) -> None:
        if self._samples and consumed < self._samples[-1][1]:
            self._samples.clear()
        self._samples.append((at, consumed))
        while len(self._samples) > 2 and at - self._samples[1][0] >= self._window_s:
            self._samples.popleft()

    def rate(self) -> float | None:
        """Records per second, or None before two samples."""
        if len(self._samples) < 2:
            return None
        (t0, c0), (t1, c1) = self._samples[0], self._samples[-1]
        return (c1 - c0) / (t1 - t0) if t1 > t0 else None


def drain_seconds(waiting: int, rate: float | None) -> float | None:
    """Time to drain `waiting` records at `rate`: 0 with none waiting, +Inf at rate 0,
    None while the rate is not known yet."""
    if waiting == 0:
        return 0.0
    if rate is None:
        return None
    return waiting / rate if rate > 0 else math.inf


class QueueProbe:
    """Measures the worker group's backlog on the served topics into `metrics`.

    `start()` runs `measure()` every `interval_s` in a daemon thread until `stop()`.
    A measurement that fails (Kafka away) removes the topics' samples, so no stale value
    is scraped, and counts in `inferfleet_worker_queue_probe_errors_total`.
    """

    def __init__(
        self,
        settings: Settings,
        metrics: WorkerMetrics,
        interval_s: float = QUEUE_PROBE_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._interval_s = interval_s
        self._clock = clock
        self._wall_clock = wall_clock
        self.topics = [t for name in settings.worker_models for t in model_topics(name)]
        self._throughput = {topic: Throughput() for topic in self.topics}
        self._clients = GroupClients(settings, "inferfleet-worker-probe", KAFKA_TIMEOUT_MS)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="queue-probe", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop measuring; returns once the thread has closed its clients (or 5 s passed)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                self.measure()
                failing = False
            except (KafkaError, OSError) as e:
                if not failing:
                    log.warning("cannot measure the queue, retrying: %s: %s", type(e).__name__, e)
                failing = True
                self._forget()
            except Exception:
                log.exception("measuring the queue failed")
                self._forget()
            self._stop.wait(self._interval_s)
        self.close()

    def _forget(self) -> None:
        self.close()
        for gauge in (
            self._metrics.consumer_lag,
            self._metrics.oldest_unconsumed_age,
            self._metrics.drain_seconds,
        ):
            gauge.clear()
        self._metrics.probe_errors.inc()

    def measure(self) -> None:
        """One measurement of every served topic that exists; KafkaError if Kafka fails."""
        consumer, admin = self._clients.get()
        partitions = [
            TopicPartition(topic, n)
            for topic in self.topics
            for n in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if not partitions:
            return
        now = self._clock()
        group = self._settings.worker_group
        found = read_offsets(consumer, admin, group, partitions, KAFKA_TIMEOUT_MS)
        end = found.end
        resume = resume_offsets(end, found.beginning, found.committed)
        oldest = self._oldest_timestamps({p: r for p, r in resume.items() if end[p] > r})
        wall_now = self._wall_clock()
        for topic in {p.topic for p in partitions}:
            mine = [p for p in partitions if p.topic == topic]
            waiting = lag({p: end[p] for p in mine}, resume)
            throughput = self._throughput[topic]
            throughput.add(now, sum(resume[p] for p in mine))
            rate = throughput.rate()
            stamps = [oldest[p] for p in mine if p in oldest]
            age = max(0.0, wall_now - min(stamps) / 1000) if stamps and waiting else 0.0
            self._metrics.consumer_lag.labels(topic).set(waiting)
            self._metrics.oldest_unconsumed_age.labels(topic).set(age)
            drain = drain_seconds(waiting, rate)
            if drain is not None:
                self._metrics.drain_seconds.labels(topic).set(drain)

    def _oldest_timestamps(self, resume: Mapping[TopicPartition, int]) -> dict[TopicPartition, int]:
        """The timestamp (ms) of the record at each partition's resume offset."""
        consumer, _ = self._clients.get()
        return timestamps_at(consumer, resume, PEEK_TIMEOUT_S)

    def close(self) -> None:
        self._clients.close()
