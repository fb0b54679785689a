"""One ScaledObject's scaling decisions: KEDA's poll loop and the HPA's sync loop together.

KEDA polls every `pollingInterval`: it measures each trigger, decides whether the
ScaledObject is active and moves the target between 0 and its minimum (`keda.py`). The
HPA syncs every 15 s: it asks KEDA's metrics server for each trigger's metric (measured
afresh, or the last poll's with `useCachedMetrics`) and sets every other count
(`hpa.py`). With `scalingModifiers` both see one composite metric, the formula over the
triggers' metrics (`getScaledObjectState`, `HandleScalingModifiers`).

Nothing here does I/O or reads a clock: offsets come in as `Reading`s, times as numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from autoscaler import keda, lag
from autoscaler.formula import FormulaError
from autoscaler.hpa import (
    DEFAULT_DOWNSCALE_STABILIZATION_S,
    DEFAULT_TOLERANCE,
    Hpa,
    Metric,
    number,
)
from autoscaler.spec import KafkaTrigger, ScaledObject

COMPOSITE = "composite-metric"  # kedav1alpha1.CompositeMetricName


@dataclass(frozen=True)
class Reading:
    """A trigger's partitions as Kafka reported them, or why they could not be read."""

    offsets: tuple[lag.PartitionOffsets, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class TriggerMetric:
    """One trigger's measurement, with its fallback state."""

    trigger: KafkaTrigger
    lag: lag.Lag | None
    error: str | None
    failures: int
    fallback: bool  # failed more than failureThreshold times: the fallback stands in

    @property
    def value(self) -> float | None:
        """The metric the scaler reports (the capped lag, never below 0), None when it failed."""
        return None if self.lag is None else float(self.lag.metric)

    @property
    def active(self) -> bool:
        """Active by its own activation threshold, or because its fallback is engaged."""
        return self.fallback or (self.lag is not None and lag.is_active(self.lag, self.trigger))


@dataclass(frozen=True)
class Composite:
    """The `scalingModifiers` metric, or why there is none."""

    value: float | None
    error: str | None = None


@dataclass(frozen=True)
class Step:
    """The outcome of a poll or a sync: the count to set (None: leave it) and why."""

    replicas: int | None
    reason: str
    metrics: Mapping[str, TriggerMetric]
    active: bool | None = None
    composite: Composite | None = None
    proposal: int | None = None


@dataclass
class Autoscaler:
    """KEDA and the HPA for one ScaledObject, from the time `created_at`."""

    so: ScaledObject
    created_at: float
    downscale_stabilization_s: float = DEFAULT_DOWNSCALE_STABILIZATION_S
    tolerance: float = DEFAULT_TOLERANCE
    hpa: Hpa = field(init=False)
    keda_state: keda.KedaState = field(init=False)
    failures: dict[str, int] = field(init=False)
    previous: dict[str, dict[tuple[str, int], int]] = field(init=False)
    last: dict[str, TriggerMetric] = field(init=False)

    def __post_init__(self) -> None:
        self.hpa = Hpa(
            minimum=self.so.hpa_min_replicas,
            maximum=self.so.max_replicas,
            behavior=self.so.behavior,
            tolerance=self.tolerance,
            downscale_stabilization_s=self.downscale_stabilization_s,
        )
        self.keda_state = keda.KedaState(self.created_at)
        self.failures = {t.name: 0 for t in self.so.triggers}
        self.previous = {t.name: {} for t in self.so.triggers}
        self.last = {}

    def measure(self, trigger: KafkaTrigger, reading: Reading) -> TriggerMetric:
        """Turn a reading into the trigger's metric, counting failures for the fallback."""
        name = trigger.name
        if reading.error is not None:
            self.failures[name] += 1
            engaged = keda.fallback_engaged(self.so, self.failures[name])
            m = TriggerMetric(trigger, None, reading.error, self.failures[name], engaged)
        else:
            self.failures[name] = 0
            measured = lag.total_lag(reading.offsets, trigger, self.previous[name])
            self.previous[name] = lag.remember(reading.offsets, self.previous[name])
            m = TriggerMetric(trigger, measured, None, 0, False)
        self.last[name] = m
        return m

    def poll(self, now: float, current: int, readings: Mapping[str, Reading]) -> Step:
        """KEDA's poll: measure every trigger, judge activity, maybe move 0 ↔ minimum."""
        metrics = {t.name: self.measure(t, readings[t.name]) for t in self.so.triggers}
        active, error, why, composite = self._activity(metrics, current)
        decision = keda.request_scale(self.so, current, active, error, now, self.keda_state)
        self.keda_state = decision.state
        return Step(
            decision.replicas,
            f"{decision.reason} ({why})",
            metrics,
            active=active,
            composite=composite,
        )

    def sync(
        self, now: float, spec_replicas: int, status_replicas: int, readings: Mapping[str, Reading]
    ) -> Step:
        """The HPA's sync; triggers with `useCachedMetrics` reuse their last poll's metric."""
        metrics = {
            t.name: self.last[t.name]
            if t.use_cached_metrics and t.name in self.last
            else self.measure(t, readings[t.name])
            for t in self.so.triggers
        }
        composite = None
        if self.so.modifiers is None:
            hpa_metrics = [
                self._hpa_metric(m, spec_replicas, status_replicas) for m in metrics.values()
            ]
        else:
            composite = self._composite(metrics, spec_replicas, status_replicas)
            hpa_metrics = [
                Metric(
                    COMPOSITE,
                    composite.value,
                    self.so.modifiers.target,
                    self.so.modifiers.metric_type,
                    composite.error,
                )
            ]
        decision = self.hpa.sync(now, spec_replicas, status_replicas, hpa_metrics)
        return Step(
            decision.replicas,
            decision.reason,
            metrics,
            composite=composite,
            proposal=decision.proposal,
        )

    def _activity(
        self, metrics: Mapping[str, TriggerMetric], current: int
    ) -> tuple[bool, bool, str, Composite | None]:
        """(active, error, why, composite) as `getScaledObjectState` judges them.

        A trigger whose fallback is engaged counts as active and not failing (its
        fallback metric stands in), except under fallback behavior `scalingModifiers`,
        where it is neither and its value in the formula is nil.
        """
        modifiers_fallback = (
            self.so.fallback is not None and self.so.fallback.behavior == "scalingModifiers"
        )
        errors = [m for m in metrics.values() if m.error is not None and not m.fallback]
        error = bool(errors)
        if self.so.modifiers is None:
            active = any(
                m.active for m in metrics.values() if not (m.fallback and modifiers_fallback)
            )
            return active, error, _describe(metrics), None
        composite = self._composite(metrics, current, current)
        if error or composite.value is None:
            why = composite.error or _describe(metrics)
            return False, True, why, composite
        activation = self.so.modifiers.activation_target
        active = composite.value > activation
        why = (
            f"{COMPOSITE} {number(composite.value)} vs activationTarget {number(activation)}; "
            + _describe(metrics)
        )
        return active, False, why, composite

    def _hpa_metric(self, m: TriggerMetric, spec: int, status: int) -> Metric:
        """What KEDA's metrics server answers the HPA for one trigger."""
        t = m.trigger
        if m.lag is not None:
            return Metric(t.name, float(m.lag.metric), t.lag_threshold, t.metric_type)
        fb = self.so.fallback
        if m.fallback and fb is not None and fb.behavior != "scalingModifiers":
            value = keda.fallback_metric(fb, t.lag_threshold, t.metric_type, spec, status)
            if value is not None:
                return Metric(t.name, value, t.lag_threshold, t.metric_type)
        return Metric(t.name, None, t.lag_threshold, t.metric_type, m.error)

    def _composite(self, metrics: Mapping[str, TriggerMetric], spec: int, status: int) -> Composite:
        """The `scalingModifiers` metric (`calculateScaleModifiersFormula`, `doFallback`)."""
        sm, fb = self.so.modifiers, self.so.fallback
        assert sm is not None
        failing = [m for m in metrics.values() if m.error is not None]
        by_formula = fb is not None and fb.behavior == "scalingModifiers"
        if fb is not None and not by_formula and any(m.fallback for m in failing):
            value = keda.fallback_metric(fb, sm.target, sm.metric_type, spec, status)
            return Composite(value, None if value is not None else "fallback needs ready replicas")
        unhandled = [m for m in failing if not (m.fallback and by_formula)]
        if unhandled:
            return Composite(None, "; ".join(f"{m.trigger.name}: {m.error}" for m in unhandled))
        values = {name: m.value for name, m in metrics.items()}
        try:
            value = sm.formula(values)
        except FormulaError as e:
            return Composite(None, f"formula {sm.formula.source!r}: {e}")
        if value is None:  # a `??` chain ended in nil: scalingModifiersFallbackTarget
            if fb is None:
                return Composite(None, "the formula gave nil and there is no fallback")
            return Composite(fb.replicas * sm.target)
        return Composite(value)


def _describe(metrics: Mapping[str, TriggerMetric]) -> str:
    parts = []
    for name, m in metrics.items():
        t = m.trigger
        if m.lag is None:
            state = f"failing ({m.failures} in a row): {m.error}"
            if m.fallback:
                state += "; fallback engaged"
        else:
            state = (
                f"lag {m.lag.with_persistent} (metric {m.lag.metric}, {m.lag.partitions} "
                f"partitions) vs activationLagThreshold {t.activation_lag_threshold}"
            )
        parts.append(f"{name} {state}")
    return "; ".join(parts)
