"""The Kubernetes HPA controller's rules for external metrics, as functions over numbers.

Sources, all in kubernetes/kubernetes pkg/controller/podautoscaler/:
replica_calculator.go (`GetExternalPerPodMetricReplicas`, `GetExternalMetricReplicas`,
`getUsageRatioReplicaCount`) and horizontal.go (`reconcileAutoscaler`,
`computeReplicasForMetrics`, `stabilizeRecommendation`, `convertDesiredReplicasWithRules`,
`calculateScaleUpLimit`, `stabilizeRecommendationWithBehaviors`,
`convertDesiredReplicasWithBehaviorRate`, `calculateScaleUpLimitWithScalingRules`,
`calculateScaleDownLimitWithBehaviors`, `getReplicasChangePerPeriod`, `storeScaleEvent`).

Times are seconds on any monotonic clock, passed in. `Hpa` keeps the controller's
memory for one HPA (its recent recommendations and scale events); everything else is a
pure function.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from autoscaler.spec import Behavior, MetricType, Policy, ScalingRules

# The controller's flags: --horizontal-pod-autoscaler-tolerance,
# --horizontal-pod-autoscaler-downscale-stabilization, --horizontal-pod-autoscaler-sync-period.
DEFAULT_TOLERANCE = 0.1
DEFAULT_DOWNSCALE_STABILIZATION_S = 300.0
DEFAULT_SYNC_PERIOD_S = 15.0
# calculateScaleUpLimit without a behavior: max(2 * current, 4) per sync.
SCALE_UP_LIMIT_FACTOR = 2.0
SCALE_UP_LIMIT_MINIMUM = 4.0


@dataclass(frozen=True)
class Tolerances:
    """How far the usage ratio may stray from 1 before the count changes (both 10 %)."""

    scale_down: float = DEFAULT_TOLERANCE
    scale_up: float = DEFAULT_TOLERANCE

    def within(self, ratio: float) -> bool:
        """`isWithin`: 1 - down ≤ ratio ≤ 1 + up (a NaN ratio is never within)."""
        return (1.0 - self.scale_down) <= ratio <= (1.0 + self.scale_up)


@dataclass(frozen=True)
class Metric:
    """An external metric as the HPA sees it: a value (or why there is none) and a target."""

    name: str
    value: float | None
    target: float
    type: MetricType = "AverageValue"
    error: str | None = None


def replicas_for_metric(
    metric: Metric, spec_replicas: int, status_replicas: int, tolerances: Tolerances
) -> int:
    """The count one metric proposes.

    AverageValue (`GetExternalPerPodMetricReplicas`): the ratio is value ÷ (target *
    running replicas); within the tolerance the count stays, else it is ceil(value ÷
    target), whatever runs now. Value (`GetExternalMetricReplicas` →
    `getUsageRatioReplicaCount`): the ratio is value ÷ target; at 0 replicas the count is
    ceil(ratio); otherwise within the tolerance it stays, else ceil(ratio * ready
    replicas) (every running worker process counts as ready here).
    """
    assert metric.value is not None
    if metric.type == "AverageValue":
        denominator = metric.target * status_replicas
        ratio = metric.value / denominator if denominator else _ratio_of_zero(metric.value)
        if tolerances.within(ratio):
            return status_replicas
        return math.ceil(metric.value / metric.target)
    ratio = metric.value / metric.target
    if spec_replicas == 0:
        return math.ceil(ratio)
    if tolerances.within(ratio):
        return spec_replicas
    return math.ceil(ratio * status_replicas)


def number(value: float) -> str:
    """A metric value for a log line: whole numbers without a fraction or an exponent."""
    if math.isfinite(value) and value == int(value):
        return str(int(value))
    return f"{value:.6g}"


def _ratio_of_zero(value: float) -> float:
    """Go's float division by zero: +Inf, or NaN for 0 ÷ 0."""
    return math.nan if value == 0 else math.inf


def scale_up_limit(current: int) -> int:
    """`calculateScaleUpLimit`: max(2 * current, 4)."""
    return int(max(SCALE_UP_LIMIT_FACTOR * current, SCALE_UP_LIMIT_MINIMUM))


def clamp_without_behavior(
    current: int, desired: int, minimum: int, maximum: int
) -> tuple[int, str]:
    """`convertDesiredReplicasWithRules`: min/max and the scale-up limit, with why."""
    limit = scale_up_limit(current)
    if maximum > limit:
        upper, why = limit, f"ScaleUpLimit max(2*{current}, 4) = {limit}"
    else:
        upper, why = maximum, f"TooManyReplicas: maxReplicaCount {maximum}"
    if desired < minimum:
        return minimum, f"TooFewReplicas: HPA minReplicas {minimum}"
    if desired > upper:
        return upper, why
    return desired, "DesiredWithinRange"


@dataclass(frozen=True)
class Stamped:
    """A recommendation or a scale event, with when it happened."""

    at: float
    value: int


def stabilize_max(
    recommendations: Sequence[Stamped], now: float, proposal: int, window_s: float
) -> tuple[int, list[Stamped]]:
    """`stabilizeRecommendation` (no behavior): the highest proposal of the window.

    Returns the stabilized count and the recommendations to keep: the new proposal
    replaces one sample older than the window, or is appended. The controller sets aside
    only the recommendations `Before(now - window)`, so one exactly as old as the window
    still counts: with the default 300 s window and 15 s syncs, the proposal of 300 s ago
    holds the count one more sync.
    """
    cutoff = now - window_s
    highest = proposal
    old: int | None = None
    for i, rec in enumerate(recommendations):
        if rec.at < cutoff:
            old = i
        elif rec.value > highest:
            highest = rec.value
    return highest, _record(recommendations, old, Stamped(now, proposal))


def stabilize_with_behavior(
    recommendations: Sequence[Stamped],
    now: float,
    current: int,
    proposal: int,
    up_window_s: float,
    down_window_s: float,
) -> tuple[int, list[Stamped]]:
    """`stabilizeRecommendationWithBehaviors`: stay between two window bounds.

    The lowest proposal of the scale-up window is the least the count may rise to, the
    highest of the scale-down window the most it may fall to; the count moves from
    `current` only as far as those allow. Unlike `stabilize_max`, the controller counts
    here only the recommendations `After(now - window)`: one exactly as old as a window
    no longer counts in it (nor is it replaced, which takes `Before` both cutoffs).
    """
    up_cutoff, down_cutoff = now - up_window_s, now - down_window_s
    up, down = proposal, proposal
    old: int | None = None
    for i, rec in enumerate(recommendations):
        if rec.at > up_cutoff:
            up = min(rec.value, up)
        if rec.at > down_cutoff:
            down = max(rec.value, down)
        if rec.at < up_cutoff and rec.at < down_cutoff:
            old = i
    recommendation = min(max(current, up), down)
    return recommendation, _record(recommendations, old, Stamped(now, proposal))


def _record(recs: Sequence[Stamped], old: int | None, new: Stamped) -> list[Stamped]:
    out = list(recs)
    if old is None:
        out.append(new)
    else:
        out[old] = new
    return out


def change_in_period(events: Sequence[Stamped], now: float, period_s: float) -> int:
    """`getReplicasChangePerPeriod`: replicas added (or removed) within the period."""
    return sum(e.value for e in events if e.at > now - period_s)


def scale_up_limit_with_rules(
    current: int, ups: Sequence[Stamped], downs: Sequence[Stamped], rules: ScalingRules, now: float
) -> int:
    """`calculateScaleUpLimitWithScalingRules`: the most replicas the policies allow now.

    Each policy starts from the count at the start of its period (current - added +
    removed within it) and adds `value` pods or `value` percent (rounded up); selectPolicy
    Max takes the largest of those, Min the smallest, Disabled keeps `current`.
    """
    return _limit_with_rules(current, ups, downs, rules, now, _added, up=True)


def scale_down_limit_with_rules(
    current: int, ups: Sequence[Stamped], downs: Sequence[Stamped], rules: ScalingRules, now: float
) -> int:
    """`calculateScaleDownLimitWithBehaviors`: the fewest replicas the policies allow now.

    Pods policies remove `value` pods, Percent policies `value` percent (the remainder
    truncated, as Go's int32 conversion does); Max takes the lowest count (the largest
    change), Min the highest.
    """
    return _limit_with_rules(current, ups, downs, rules, now, _removed, up=False)


def _added(start: int, policy: Policy) -> int:
    if policy.type == "Pods":
        return start + policy.value
    return math.ceil(start * (1 + policy.value / 100))


def _removed(start: int, policy: Policy) -> int:
    if policy.type == "Pods":
        return start - policy.value
    return int(start * (1 - policy.value / 100))


def _limit_with_rules(
    current: int,
    ups: Sequence[Stamped],
    downs: Sequence[Stamped],
    rules: ScalingRules,
    now: float,
    step: Callable[[int, Policy], int],
    *,
    up: bool,
) -> int:
    """The limit both directions share: each policy steps from the count at the start of
    its period; selectPolicy Max takes the largest change, Min the smallest."""
    if rules.select_policy == "Disabled":
        return current
    proposals = [
        step(
            current
            - change_in_period(ups, now, policy.period_s)
            + change_in_period(downs, now, policy.period_s),
            policy,
        )
        for policy in rules.policies
    ]
    largest_change = max(proposals) if up else min(proposals)
    smallest_change = min(proposals) if up else max(proposals)
    return smallest_change if rules.select_policy == "Min" else largest_change


@dataclass(frozen=True)
class Decision:
    """What one HPA sync decided: the count to set (None: leave it) and why."""

    replicas: int | None
    reason: str
    proposal: int | None = None


@dataclass
class Hpa:
    """One HPA's controller memory and its sync, for a ScaledObject's target.

    `minimum` and `maximum` are the HPA's minReplicas and maxReplicas;
    `downscale_stabilization_s` is the window used when no behavior sets one.
    """

    minimum: int
    maximum: int
    behavior: Behavior | None = None
    tolerance: float = DEFAULT_TOLERANCE
    downscale_stabilization_s: float = DEFAULT_DOWNSCALE_STABILIZATION_S
    recommendations: list[Stamped] = field(default_factory=list)
    ups: list[Stamped] = field(default_factory=list)
    downs: list[Stamped] = field(default_factory=list)

    def tolerances(self) -> Tolerances:
        """The behavior's per-direction tolerances where set, the controller's otherwise."""
        b = self.behavior
        down = b.scale_down.tolerance if b and b.scale_down.tolerance is not None else None
        up = b.scale_up.tolerance if b and b.scale_up.tolerance is not None else None
        return Tolerances(
            scale_down=self.tolerance if down is None else down,
            scale_up=self.tolerance if up is None else up,
        )

    def sync(
        self, now: float, spec_replicas: int, status_replicas: int, metrics: Sequence[Metric]
    ) -> Decision:
        """`reconcileAutoscaler` for one sync: the count to set, or None to leave it."""
        if not self.recommendations:
            # recordInitialRecommendation: taken earlier in the reconcile than the window's
            # cutoff, so a window of 0 s no longer counts it.
            self.recommendations.append(Stamped(math.nextafter(now, -math.inf), spec_replicas))
        if spec_replicas == 0 and self.minimum != 0:
            return Decision(None, "ScalingDisabled: the target has 0 replicas (KEDA's to wake)")
        if spec_replicas > self.maximum:
            return self._set(now, spec_replicas, self.maximum, "above maxReplicaCount")
        if spec_replicas < self.minimum:
            return self._set(now, spec_replicas, self.minimum, "below the HPA's minReplicas")
        proposal, why = self.propose(spec_replicas, status_replicas, metrics)
        if proposal is None:
            return Decision(None, why)
        if self.behavior is None:
            window = self.downscale_stabilization_s
            stabilized, self.recommendations = stabilize_max(
                self.recommendations, now, proposal, window
            )
            desired, limit = clamp_without_behavior(
                spec_replicas, stabilized, self.minimum, self.maximum
            )
        else:
            stabilized, desired, limit = self._normalize_with_behavior(now, spec_replicas, proposal)
        if stabilized != proposal:
            why += f"; stabilized to {stabilized} (recent recommendations)"
        if desired != stabilized:
            why += f"; limited to {desired} ({limit})"
        if desired == spec_replicas:
            return Decision(None, why, proposal)
        return self._set(now, spec_replicas, desired, why, proposal)

    def propose(
        self, spec_replicas: int, status_replicas: int, metrics: Sequence[Metric]
    ) -> tuple[int | None, str]:
        """`computeReplicasForMetrics`: the highest proposal of the valid metrics, with why.

        None when every metric is invalid, or when some are and the valid ones would
        scale down: the HPA then leaves the count as it is.
        """
        tolerances = self.tolerances()
        best: int | None = None
        parts: list[str] = []
        invalid = [m for m in metrics if m.value is None]
        for m in metrics:
            if m.value is None:
                parts.append(f"{m.name}: {m.error or 'no value'}")
                continue
            n = replicas_for_metric(m, spec_replicas, status_replicas, tolerances)
            parts.append(f"{m.name} {number(m.value)}/{number(m.target)} ({m.type}) → {n}")
            if best is None or n > best:
                best = n
        why = "; ".join(parts)
        if best is None or (invalid and best < spec_replicas):
            return None, f"invalid metrics, no change: {why}"
        return best, f"proposal {best} from {why}"

    def _normalize_with_behavior(
        self, now: float, current: int, proposal: int
    ) -> tuple[int, int, str]:
        """`normalizeDesiredReplicasWithBehaviors`: stabilize, then apply the rate policies."""
        assert self.behavior is not None
        up, down = self.behavior.scale_up, self.behavior.scale_down
        down_window = (
            self.downscale_stabilization_s if down.stabilization_s is None else down.stabilization_s
        )
        up_window = 0.0 if up.stabilization_s is None else up.stabilization_s
        stabilized, self.recommendations = stabilize_with_behavior(
            self.recommendations, now, current, proposal, up_window, down_window
        )
        if stabilized > current:
            limit = max(current, scale_up_limit_with_rules(current, self.ups, self.downs, up, now))
            if self.maximum > limit:
                upper, why = limit, f"ScaleUpLimit: scaleUp policies allow {limit}"
            else:
                upper, why = self.maximum, f"TooManyReplicas: maxReplicaCount {self.maximum}"
            if stabilized > upper:
                return stabilized, upper, why
        elif stabilized < current:
            limit = min(
                current, scale_down_limit_with_rules(current, self.ups, self.downs, down, now)
            )
            if self.minimum < limit:
                lower, why = limit, f"ScaleDownLimit: scaleDown policies allow {limit}"
            else:
                lower, why = self.minimum, f"TooFewReplicas: HPA minReplicas {self.minimum}"
            if stabilized < lower:
                return stabilized, lower, why
        return stabilized, stabilized, "DesiredWithinRange"

    def _set(
        self, now: float, current: int, desired: int, why: str, proposal: int | None = None
    ) -> Decision:
        """Record the scale event the behavior's policies count (`storeScaleEvent`)."""
        if self.behavior is not None and desired != current:
            if desired > current:
                self.ups = _store(self.ups, now, desired - current, self.behavior.scale_up)
            else:
                self.downs = _store(self.downs, now, current - desired, self.behavior.scale_down)
        return Decision(desired, why, proposal)


def _store(
    events: Sequence[Stamped], now: float, change: int, rules: ScalingRules
) -> list[Stamped]:
    """Append an event, dropping those older than the longest policy period (none used them)."""
    longest = max((p.period_s for p in rules.policies), default=0.0)
    return [e for e in events if e.at >= now - longest] + [Stamped(now, change)]
