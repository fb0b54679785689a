"""A KEDA v2 ScaledObject as the local autoscaler applies it: frozen dataclasses.

Only what the autoscaler applies is kept: the replica bounds and timings, the `kafka`
triggers, the fallback, the HPA behavior and `scalingModifiers`. Defaults are KEDA's and
the HPA's, cited beside each. `autoscaler.manifest` reads them from a manifest file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from autoscaler.formula import Formula
from inferfleet.errors import ConfigError

# apis/keda/v1alpha1: defaultPollingInterval, defaultHPAMaxReplicas; pkg/scaling/executor:
# defaultCooldownPeriod, defaultInitialCooldownPeriod.
DEFAULT_POLLING_INTERVAL_S = 30
DEFAULT_COOLDOWN_S = 300
DEFAULT_INITIAL_COOLDOWN_S = 0
DEFAULT_MAX_REPLICAS = 100

MetricType = Literal["AverageValue", "Value"]
SelectPolicy = Literal["Max", "Min", "Disabled"]
PolicyType = Literal["Pods", "Percent"]
FallbackBehavior = Literal[
    "static",
    "currentReplicas",
    "currentReplicasIfHigher",
    "currentReplicasIfLower",
    "scalingModifiers",
]


class ScaledObjectError(ConfigError):
    """Raised when a ScaledObject file cannot be read or is not one this autoscaler applies."""


@dataclass(frozen=True)
class KafkaTrigger:
    """One `kafka` trigger's metadata, typed, with KEDA's defaults (kafka_scaler.go)."""

    name: str  # the trigger's `name`, or KEDA's metric name `s<index>-kafka-<topic>`
    consumer_group: str
    topic: str | None
    lag_threshold: int = 10
    activation_lag_threshold: int = 0
    offset_reset_policy: Literal["latest", "earliest"] = "latest"
    allow_idle_consumers: bool = False
    exclude_persistent_lag: bool = False
    scale_to_zero_on_invalid_offset: bool = False
    limit_to_partitions_with_lag: bool = False
    ensure_even_distribution_of_partitions: bool = False
    partition_limitation: tuple[int, ...] | None = None
    metric_type: MetricType = "AverageValue"
    use_cached_metrics: bool = False


@dataclass(frozen=True)
class Policy:
    """An HPA scaling policy: change by `value` pods or percent per `period_s`."""

    type: PolicyType
    value: int
    period_s: float


@dataclass(frozen=True)
class ScalingRules:
    """One direction of an HPA behavior, with the API server's defaults filled in.

    `stabilization_s` None means the controller's default (its
    `--horizontal-pod-autoscaler-downscale-stabilization`, 300 s), as
    `maybeInitScaleDownStabilizationWindow` applies it; `tolerance` None means the
    controller-wide tolerance (10 %).
    """

    stabilization_s: float | None
    select_policy: SelectPolicy
    policies: tuple[Policy, ...]
    tolerance: float | None = None


# k8s.io/kubernetes/pkg/apis/autoscaling/v2/defaults.go: scale up by 4 pods or 100 % per
# 15 s, no stabilization; scale down by 100 % per 15 s, the controller's window.
DEFAULT_SCALE_UP = ScalingRules(
    stabilization_s=0,
    select_policy="Max",
    policies=(Policy("Pods", 4, 15), Policy("Percent", 100, 15)),
)
DEFAULT_SCALE_DOWN = ScalingRules(
    stabilization_s=None, select_policy="Max", policies=(Policy("Percent", 100, 15),)
)


@dataclass(frozen=True)
class Behavior:
    """`advanced.horizontalPodAutoscalerConfig.behavior`, both directions defaulted."""

    scale_up: ScalingRules = DEFAULT_SCALE_UP
    scale_down: ScalingRules = DEFAULT_SCALE_DOWN


@dataclass(frozen=True)
class ScalingModifiers:
    """`advanced.scalingModifiers`: one composite metric computed by `formula`."""

    formula: Formula
    target: float
    activation_target: float = 0.0
    metric_type: MetricType = "AverageValue"


@dataclass(frozen=True)
class Fallback:
    """`fallback`: replicas to run once a trigger failed more than `failure_threshold` times."""

    failure_threshold: int
    replicas: int
    behavior: FallbackBehavior = "static"


@dataclass(frozen=True)
class ScaledObject:
    """What the local autoscaler applies of one ScaledObject."""

    name: str
    target: str  # scaleTargetRef.name
    triggers: tuple[KafkaTrigger, ...]
    polling_interval_s: float = DEFAULT_POLLING_INTERVAL_S
    cooldown_s: float = DEFAULT_COOLDOWN_S
    initial_cooldown_s: float = DEFAULT_INITIAL_COOLDOWN_S
    min_replicas: int = 0
    max_replicas: int = DEFAULT_MAX_REPLICAS
    idle_replicas: int | None = None
    fallback: Fallback | None = None
    behavior: Behavior | None = None
    modifiers: ScalingModifiers | None = None

    @property
    def hpa_min_replicas(self) -> int:
        """The HPA's minReplicas: minReplicaCount if above 0, else 1 (GetHPAMinReplicas)."""
        return self.min_replicas if self.min_replicas > 0 else 1
