"""The API's Prometheus metrics, in a registry of their own passed to whoever counts."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class ApiMetrics:
    """Counters and histograms of the submission path; labels are bounded (no job IDs)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
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
        self.requests_refused = Counter(
            "inferfleet_api_requests_refused_total",
            "Requests refused after auth, before their route: too_large (413), rate_limited (429).",
            ["reason"],
            registry=self.registry,
        )
        self.produce_seconds = Histogram(
            "inferfleet_api_produce_duration_seconds",
            "Time for Kafka to acknowledge one submission's messages.",
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
