"""What KEDA itself decides, beside the HPA: waking from zero, idling, and fallbacks.

Sources in kedacore/keda: pkg/scaling/executor/scale_scaledobjects.go (`RequestScale`,
`scaleToZeroOrIdle`, `scaleFromZeroOrIdle`), pkg/fallback/fallback.go
(`GetMetricsWithFallback`, `doFallback`, `HasValidFallback`) and
pkg/scaling/scale_handler.go (`getScaledObjectState`). KEDA only ever moves a target
between 0 (or `idleReplicaCount`) and its minimum; every count in between is the HPA's.
"""

from __future__ import annotations

from dataclasses import dataclass

from autoscaler.spec import Fallback, MetricType, ScaledObject


@dataclass(frozen=True)
class KedaState:
    """What KEDA remembers between polls: when a trigger was last active (`lastActiveTime`)."""

    created_at: float
    last_active_at: float | None = None


@dataclass(frozen=True)
class KedaDecision:
    """A poll's outcome: the count to set (None: leave it), why, and the new state."""

    replicas: int | None
    reason: str
    state: KedaState


def request_scale(
    so: ScaledObject, current: int, active: bool, error: bool, now: float, state: KedaState
) -> KedaDecision:
    """`RequestScale` for one poll of the ScaledObject whose target runs `current` replicas.

    Active: from 0 (or from below the minimum while idle replicas are configured) go to
    minReplicaCount, or 1 if that is 0; otherwise only note the time (`lastActiveTime`),
    unless a trigger failed. Inactive: a failing trigger changes nothing (with a
    fallback of non-zero replicas the HPA will apply it; without one KEDA reports the
    error); otherwise go to idleReplicaCount or 0 once `cooldownPeriod` has passed since
    the last active poll (`initialCooldownPeriod` since creation when there never was
    one), and up to minReplicaCount when below it.
    """
    idle = so.idle_replicas
    if active:
        if (idle is not None and current < so.min_replicas) or current == 0:
            to = so.min_replicas if so.min_replicas > 0 else 1
            return KedaDecision(
                to, "activated: a trigger is active", KedaState(state.created_at, now)
            )
        if error:
            return KedaDecision(None, "some triggers failed; others are active", state)
        return KedaDecision(None, "active", KedaState(state.created_at, now))
    fallback = so.fallback
    if error and fallback is not None and fallback.replicas != 0:
        return KedaDecision(
            None, "triggers failing; the HPA falls back after failureThreshold", state
        )
    if error and fallback is None:
        return KedaDecision(None, "triggers failing and no fallback: no change", state)
    if (idle is not None and current > idle) or (current > 0 and so.min_replicas == 0):
        if state.last_active_at is None:
            since, window, what = state.created_at, so.initial_cooldown_s, "initialCooldownPeriod"
            ago = f"never active, created {now - since:.1f} s ago"
        else:
            since, window, what = state.last_active_at, so.cooldown_s, "cooldownPeriod"
            ago = f"last active {now - since:.1f} s ago"
        to = idle if idle is not None else so.min_replicas
        if since + window < now:
            return KedaDecision(to, f"deactivated: {ago}, past {what} {window:g} s", state)
        return KedaDecision(None, f"cooling down: {ago}, {what} {window:g} s", state)
    if idle is None and current < so.min_replicas:
        return KedaDecision(so.min_replicas, "inactive and below minReplicaCount", state)
    return KedaDecision(None, "inactive", state)


def fallback_valid(so: ScaledObject) -> bool:
    """`HasValidFallback`: non-negative numbers, and an integer target above 0 with modifiers."""
    if so.fallback is None:
        return False
    if so.modifiers is not None:
        target = so.modifiers.target
        if target != int(target) or target <= 0:
            return False
    return so.fallback.failure_threshold >= 0 and so.fallback.replicas >= 0


def fallback_engaged(so: ScaledObject, failures: int) -> bool:
    """A trigger that failed `failures` times in a row now reports the fallback metric."""
    return (
        fallback_valid(so) and so.fallback is not None and failures > so.fallback.failure_threshold
    )


def fallback_replicas(fallback: Fallback, current: int) -> int:
    """`doFallback`: the replica count the fallback metric stands for."""
    match fallback.behavior:
        case "currentReplicas":
            return current
        case "currentReplicasIfHigher":
            return max(current, fallback.replicas)
        case "currentReplicasIfLower":
            return min(current, fallback.replicas)
    return fallback.replicas


def fallback_metric(
    fallback: Fallback, target: float, metric_type: MetricType, current: int, ready: int
) -> float | None:
    """The value KEDA serves instead of a failing metric, so the HPA computes the fallback.

    replicas * target; for a Value metric divided by the ready replicas first (None,
    no fallback, when none is ready).
    """
    replicas: float = fallback_replicas(fallback, current)
    if metric_type == "Value":
        if ready == 0:
            return None
        replicas /= ready
    return target * replicas
