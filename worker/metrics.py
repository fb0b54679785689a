"""The worker's Prometheus metrics, in a registry of their own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

BATCH_BUCKETS = (1, 8, 32, 128, 512, 1024, 2048, 4096, 8192, 16384)


class WorkerMetrics:
    """What a batch did and how long it took; labels are bounded (model, version)."""

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
            "Poll-to-commit time of one batch.",
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
            "inferfleet_worker_dead_letters_total",
            "Records copied to a dead-letter topic: undecodable ones, jobs that failed for good.",
            registry=self.registry,
        )
        self.model_loaded = Gauge(
            "inferfleet_worker_model_loaded",
            "1 for each model version loaded, labelled with its execution provider.",
            ["model", "version", "provider"],
            registry=self.registry,
        )
