"""The autoscaler's Prometheus metrics, in a registry of their own.

Labels are bounded: `trigger` is one of the ScaledObject's trigger names, `loop` is
`keda` or `hpa`, `direction` is `up` or `down`.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge

from autoscaler.engine import Composite, TriggerMetric
from inferfleet.buildinfo import register_build_info


class AutoscalerMetrics:
    """Lag per trigger, the composite metric, activity, and wanted and running replicas."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.lag = Gauge(
            "inferfleet_autoscaler_lag_records",
            "A trigger's consumer lag as KEDA's kafka scaler reports it (after the partition "
            "cap, never below 0), at the last measurement.",
            ["trigger"],
            registry=self.registry,
        )
        self.lag_total = Gauge(
            "inferfleet_autoscaler_lag_uncapped_records",
            "A trigger's consumer lag summed over its partitions, before the partition cap "
            "and signed (what activation is judged on).",
            ["trigger"],
            registry=self.registry,
        )
        self.partitions = Gauge(
            "inferfleet_autoscaler_partitions",
            "Partitions a trigger measures.",
            ["trigger"],
            registry=self.registry,
        )
        self.failures = Counter(
            "inferfleet_autoscaler_lag_errors_total",
            "Measurements of a trigger that failed.",
            ["trigger"],
            registry=self.registry,
        )
        self.composite = Gauge(
            "inferfleet_autoscaler_composite_metric",
            "The scalingModifiers formula's value (NaN when it has none).",
            registry=self.registry,
        )
        self.active = Gauge(
            "inferfleet_autoscaler_active",
            "1 while KEDA judges the ScaledObject active.",
            registry=self.registry,
        )
        self.proposal = Gauge(
            "inferfleet_autoscaler_hpa_proposal_replicas",
            "The replicas the HPA's metrics proposed at its last sync, before stabilization "
            "and limits.",
            registry=self.registry,
        )
        self.desired = Gauge(
            "inferfleet_autoscaler_desired_replicas",
            "The replicas KEDA and the HPA set (the Deployment's spec.replicas).",
            registry=self.registry,
        )
        self.replicas = Gauge(
            "inferfleet_autoscaler_replicas",
            "Worker processes running and not stopping (status.replicas).",
            registry=self.registry,
        )
        self.stopping = Gauge(
            "inferfleet_autoscaler_stopping_replicas",
            "Worker processes draining after SIGTERM.",
            registry=self.registry,
        )
        self.scalings = Counter(
            "inferfleet_autoscaler_scalings_total",
            "Changes of the desired replicas, by the loop that made them and direction.",
            ["loop", "direction"],
            registry=self.registry,
        )
        register_build_info(self.registry)

    def observe(self, metrics: Mapping[str, TriggerMetric], composite: Composite | None) -> None:
        """Publish one measurement of the triggers (and the composite metric, if any)."""
        for name, m in metrics.items():
            if m.lag is None:
                self.failures.labels(name).inc()
                continue
            self.lag.labels(name).set(m.lag.metric)
            self.lag_total.labels(name).set(m.lag.with_persistent)
            self.partitions.labels(name).set(m.lag.partitions)
        if composite is not None:
            self.composite.set(float("nan") if composite.value is None else composite.value)
