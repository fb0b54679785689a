"""Reads a ScaledObject from a manifest file, checked as KEDA checks it.

Trigger metadata is parsed the way KEDA's typed config parses it (integers as JSON
numbers, booleans as Go's `strconv.ParseBool`, every value trimmed, `<name>FromEnv` read
from the environment), and a bad value fails naming the trigger, the field and the value.
Unknown metadata keys are logged, as KEDA does with `KEDA_CHECK_UNEXPECTED_SCALERS_PARAMS`,
and otherwise ignored.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from autoscaler.formula import Formula, FormulaError
from autoscaler.spec import (
    DEFAULT_COOLDOWN_S,
    DEFAULT_INITIAL_COOLDOWN_S,
    DEFAULT_MAX_REPLICAS,
    DEFAULT_POLLING_INTERVAL_S,
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    Behavior,
    Fallback,
    FallbackBehavior,
    KafkaTrigger,
    Policy,
    ScaledObject,
    ScaledObjectError,
    ScalingModifiers,
    ScalingRules,
)

log = logging.getLogger(__name__)

# The `kafka` scaler's metadata names, from KEDA's scalers-schema.json.
KAFKA_METADATA = frozenset(
    {
        "bootstrapServers",
        "consumerGroup",
        "topic",
        "partitionLimitation",
        "lagThreshold",
        "activationLagThreshold",
        "offsetResetPolicy",
        "allowIdleConsumers",
        "excludePersistentLag",
        "scaleToZeroOnInvalidOffset",
        "limitToPartitionsWithLag",
        "ensureEvenDistributionOfPartitions",
        "fullMetadata",
        "version",
        "tls",
        "unsafeSsl",
        "sasl",
        "saslTokenProvider",
        "awsRegion",
    }
)
# Those KEDA may also read from the target container's environment (`<name>FromEnv`).
FROM_ENV = ("bootstrapServers", "consumerGroup", "topic")


def load(path: Path, name: str | None = None, env: Mapping[str, str] | None = None) -> ScaledObject:
    """The ScaledObject in `path` (named `name` if the file holds several)."""
    try:
        documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except (OSError, yaml.YAMLError) as e:
        raise ScaledObjectError(f"cannot read {path}: {e}") from e
    found = [
        d
        for d in documents
        if isinstance(d, dict)
        and d.get("kind") == "ScaledObject"
        and str(d.get("apiVersion", "")).startswith("keda.sh/")
    ]
    if name is not None:
        found = [d for d in found if _get(d, "metadata", "name") == name]
    if len(found) != 1:
        names = [_get(d, "metadata", "name") for d in found]
        wanted = f" named {name!r}" if name else ""
        raise ScaledObjectError(
            f"{path} holds {len(found)} ScaledObjects{wanted} ({names}); "
            "name exactly one with --name"
        )
    return parse(found[0], env or {})


def parse(document: Mapping[str, Any], env: Mapping[str, str]) -> ScaledObject:
    """A ScaledObject from its parsed manifest; `env` resolves `<name>FromEnv` metadata."""
    name = str(_get(document, "metadata", "name") or "scaledobject")
    spec = _get(document, "spec")
    if not isinstance(spec, Mapping):
        raise ScaledObjectError(f"ScaledObject {name}: no spec")
    target = _get(spec, "scaleTargetRef", "name")
    if not target:
        raise ScaledObjectError(f"ScaledObject {name}: spec.scaleTargetRef.name is required")
    raw_triggers = spec.get("triggers") or []
    if not raw_triggers:
        raise ScaledObjectError(f"ScaledObject {name}: spec.triggers is empty")
    triggers = tuple(_trigger(name, i, t, env) for i, t in enumerate(raw_triggers))
    so = ScaledObject(
        name=name,
        target=str(target),
        triggers=triggers,
        polling_interval_s=_int(spec, "pollingInterval", DEFAULT_POLLING_INTERVAL_S, 1),
        cooldown_s=_int(spec, "cooldownPeriod", DEFAULT_COOLDOWN_S, 0),
        initial_cooldown_s=_int(spec, "initialCooldownPeriod", DEFAULT_INITIAL_COOLDOWN_S, 0),
        min_replicas=_int(spec, "minReplicaCount", 0, 0),
        max_replicas=_int(spec, "maxReplicaCount", DEFAULT_MAX_REPLICAS, 1),
        idle_replicas=_int(spec, "idleReplicaCount", None, 0),
        fallback=_fallback(spec.get("fallback")),
        behavior=_behavior(_get(spec, "advanced", "horizontalPodAutoscalerConfig", "behavior")),
        modifiers=_modifiers(_get(spec, "advanced", "scalingModifiers"), triggers),
    )
    if so.min_replicas > so.max_replicas:
        raise ScaledObjectError(
            f"ScaledObject {name}: minReplicaCount {so.min_replicas} is above "
            f"maxReplicaCount {so.max_replicas}"
        )
    if so.idle_replicas is not None and so.idle_replicas >= so.min_replicas:
        raise ScaledObjectError(
            f"ScaledObject {name}: idleReplicaCount {so.idle_replicas} must be below "
            f"minReplicaCount {so.min_replicas}"
        )
    groups = {t.consumer_group for t in triggers}
    if len(groups) != 1:
        raise ScaledObjectError(
            f"ScaledObject {name}: the triggers name several consumer groups {sorted(groups)}; "
            "one Deployment's workers are one group"
        )
    return so


def _get(node: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def _int(spec: Mapping[str, Any], key: str, default: int | None, minimum: int) -> Any:
    value = spec.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ScaledObjectError(f"spec.{key} must be an integer >= {minimum}, not {value!r}")
    return value


def _trigger(so: str, index: int, raw: Any, env: Mapping[str, str]) -> KafkaTrigger:
    _check_kafka(so, index, raw)
    meta = _Metadata(
        where=f"ScaledObject {so}, trigger {raw.get('name') or index}",
        values={str(k): str(v).strip() for k, v in (raw.get("metadata") or {}).items()},
        env=env,
    )
    meta.warn_unexpected()
    meta.required("bootstrapServers")
    group = meta.required("consumerGroup")
    topic = meta.text("topic")
    policy = meta.one_of("offsetResetPolicy", meta.text("offsetResetPolicy") or "latest")
    metric_type = meta.one_of("metricType", raw.get("metricType") or "AverageValue")
    trigger = KafkaTrigger(
        name=str(raw.get("name") or f"s{index}-kafka-{topic or group + '-topics'}"),
        consumer_group=group,
        topic=topic,
        lag_threshold=meta.integer("lagThreshold", 10),
        activation_lag_threshold=meta.integer("activationLagThreshold", 0),
        offset_reset_policy="earliest" if policy == "earliest" else "latest",
        allow_idle_consumers=meta.boolean("allowIdleConsumers"),
        exclude_persistent_lag=meta.boolean("excludePersistentLag"),
        scale_to_zero_on_invalid_offset=meta.boolean("scaleToZeroOnInvalidOffset"),
        limit_to_partitions_with_lag=meta.boolean("limitToPartitionsWithLag"),
        ensure_even_distribution_of_partitions=meta.boolean("ensureEvenDistributionOfPartitions"),
        # Without a topic KEDA drops partitionLimitation (kafkaMetadata.Validate).
        partition_limitation=(
            _partitions(meta.where, meta.text("partitionLimitation")) if topic else None
        ),
        metric_type="Value" if metric_type == "Value" else "AverageValue",
        use_cached_metrics=bool(raw.get("useCachedMetrics", False)),
    )
    _validate_trigger(meta.where, trigger)
    return trigger


def _check_kafka(so: str, index: int, raw: Any) -> None:
    """A trigger is a mapping of type `kafka`, the only type applied here."""
    if not isinstance(raw, Mapping):
        raise ScaledObjectError(f"ScaledObject {so}: trigger {index} is not a mapping")
    kind = raw.get("type")
    if kind != "kafka":
        raise ScaledObjectError(
            f"ScaledObject {so}: trigger {index} has type {kind!r}; "
            "the local autoscaler applies only `kafka` triggers"
        )


# The values each enumerated trigger field may take, in the words of its error.
_CHOICES: dict[str, tuple[str, str]] = {
    "offsetResetPolicy": ("latest", "earliest"),
    "metricType": ("AverageValue", "Value"),
}


@dataclass(frozen=True)
class _Metadata:
    """A trigger's metadata read as KEDA reads it: `…FromEnv` fallbacks, integers and
    booleans parsed as Go parses them; every error names the trigger (`where`)."""

    where: str
    values: Mapping[str, str]
    env: Mapping[str, str]

    def warn_unexpected(self) -> None:
        for key in sorted(self.values):
            base = key.removesuffix("FromEnv")
            if key not in KAFKA_METADATA and not (key.endswith("FromEnv") and base in FROM_ENV):
                log.warning(
                    "%s: unexpected metadata %s ignored, as KEDA ignores it", self.where, key
                )

    def text(self, key: str) -> str | None:
        value = self.values.get(key)
        if not value and key in FROM_ENV and self.values.get(f"{key}FromEnv"):
            value = self.env.get(self.values[f"{key}FromEnv"], "").strip()
        return value or None

    def required(self, key: str) -> str:
        value = self.text(key)
        if value is None:
            raise ScaledObjectError(f"{self.where}: {key} is required")
        return value

    def integer(self, key: str, default: int) -> int:
        value = self.text(key)
        if value is None:
            return default
        if not re.fullmatch(r"-?\d+", value):
            raise ScaledObjectError(f"{self.where}: {key} {value!r} is not an integer")
        return int(value)

    def boolean(self, key: str) -> bool:
        value = self.text(key)
        if value is None:
            return False
        if value in {"1", "t", "T", "TRUE", "true", "True"}:
            return True
        if value in {"0", "f", "F", "FALSE", "false", "False"}:
            return False
        raise ScaledObjectError(f"{self.where}: {key} {value!r} is not a boolean")

    def one_of(self, key: str, value: Any) -> str:
        first, second = _CHOICES[key]
        if value not in (first, second):
            raise ScaledObjectError(f"{self.where}: {key} {value!r} is not {first} or {second}")
        return str(value)


def _validate_trigger(where: str, t: KafkaTrigger) -> None:
    """The checks of kafkaMetadata.Validate that concern lag and partitions."""
    if t.lag_threshold <= 0:
        raise ScaledObjectError(f"{where}: lagThreshold must be positive, not {t.lag_threshold}")
    if t.activation_lag_threshold < 0:
        raise ScaledObjectError(
            f"{where}: activationLagThreshold must be >= 0, not {t.activation_lag_threshold}"
        )
    if t.allow_idle_consumers and t.limit_to_partitions_with_lag:
        raise ScaledObjectError(
            f"{where}: allowIdleConsumers and limitToPartitionsWithLag cannot both be set"
        )
    if t.limit_to_partitions_with_lag and t.ensure_even_distribution_of_partitions:
        raise ScaledObjectError(
            f"{where}: limitToPartitionsWithLag and ensureEvenDistributionOfPartitions "
            "cannot both be set"
        )
    if t.topic is None and (
        t.limit_to_partitions_with_lag or t.ensure_even_distribution_of_partitions
    ):
        raise ScaledObjectError(
            f"{where}: limitToPartitionsWithLag and ensureEvenDistributionOfPartitions need a topic"
        )
    if t.topic is None:
        log.warning(
            "%s: no topic set, so lag is summed over every topic group %s has committed to",
            where,
            t.consumer_group,
        )


def _partitions(where: str, value: str | None) -> tuple[int, ...] | None:
    """`partitionLimitation`: `0,1,4-6` (parsePartitionLimitation)."""
    if value is None:
        return None
    out: list[int] = []
    for part in (p.strip() for p in value.split(",")):
        bounds = [b.strip() for b in part.split("-")] if "-" in part else [part]
        if len(bounds) > 2 or not all(re.fullmatch(r"\d+", b) for b in bounds):
            raise ScaledObjectError(f"{where}: invalid partitionLimitation {part!r}")
        out.extend(range(int(bounds[0]), int(bounds[-1]) + 1))
    return tuple(out)


def _fallback(raw: Any) -> Fallback | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or "failureThreshold" not in raw or "replicas" not in raw:
        raise ScaledObjectError("spec.fallback needs failureThreshold and replicas")
    behavior = raw.get("behavior", "static")
    allowed = FallbackBehavior.__args__  # type: ignore[attr-defined]
    if behavior not in allowed:
        raise ScaledObjectError(f"spec.fallback.behavior {behavior!r} is not one of {allowed}")
    return Fallback(
        failure_threshold=_int(raw, "failureThreshold", 0, 0),
        replicas=_int(raw, "replicas", 0, 0),
        behavior=behavior,
    )


def _behavior(raw: Any) -> Behavior | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ScaledObjectError("the HPA behavior is not a mapping")
    return Behavior(
        scale_up=_rules("scaleUp", raw.get("scaleUp"), DEFAULT_SCALE_UP),
        scale_down=_rules("scaleDown", raw.get("scaleDown"), DEFAULT_SCALE_DOWN),
    )


def _rules(direction: str, raw: Any, default: ScalingRules) -> ScalingRules:
    """The given fields over the defaults, as the API server's copyHPAScalingRules does."""
    if raw is None:
        return default
    where = f"behavior.{direction}"
    select = raw.get("selectPolicy", default.select_policy)
    if select not in ("Max", "Min", "Disabled"):
        raise ScaledObjectError(f"{where}.selectPolicy {select!r} is not Max, Min or Disabled")
    window = raw.get("stabilizationWindowSeconds", default.stabilization_s)
    if window is not None and not 0 <= window <= 3600:
        raise ScaledObjectError(f"{where}.stabilizationWindowSeconds {window!r} is not in 0..3600")
    policies = default.policies
    if raw.get("policies") is not None:
        policies = tuple(_policy(where, p) for p in raw["policies"])
    tolerance = raw.get("tolerance")
    if tolerance is not None:
        tolerance = float(tolerance)
        if not math.isfinite(tolerance) or tolerance < 0:
            raise ScaledObjectError(f"{where}.tolerance {raw['tolerance']!r} must be >= 0")
    return ScalingRules(
        stabilization_s=window, select_policy=select, policies=policies, tolerance=tolerance
    )


def _policy(where: str, raw: Any) -> Policy:
    kind, value, period = raw.get("type"), raw.get("value"), raw.get("periodSeconds")
    if kind not in ("Pods", "Percent"):
        raise ScaledObjectError(f"{where}: policy type {kind!r} is not Pods or Percent")
    if not isinstance(value, int) or value <= 0:
        raise ScaledObjectError(f"{where}: policy value {value!r} must be a positive integer")
    if not isinstance(period, int) or not 0 < period <= 1800:
        raise ScaledObjectError(f"{where}: policy periodSeconds {period!r} is not in 1..1800")
    return Policy("Pods" if kind == "Pods" else "Percent", value, period)


def _modifiers(raw: Any, triggers: tuple[KafkaTrigger, ...]) -> ScalingModifiers | None:
    """`scalingModifiers`, checked as KEDA's admission webhook checks them."""
    if not raw or not raw.get("formula"):
        return None
    where = "advanced.scalingModifiers"
    target = _number(where, "target", raw.get("target"))
    if target is None or target <= 0:
        raise ScaledObjectError(f"{where}: target must be a number above 0, not {target!r}")
    metric_type = raw.get("metricType") or "AverageValue"
    if metric_type not in ("AverageValue", "Value"):
        raise ScaledObjectError(f"{where}: metricType {metric_type!r} is not AverageValue or Value")
    names = {t.name for t in triggers}
    try:
        formula = Formula.compile(str(raw["formula"]), names)
    except FormulaError as e:
        raise ScaledObjectError(f"{where}: formula {raw['formula']!r}: {e}") from e
    return ScalingModifiers(
        formula=formula,
        target=target,
        activation_target=_number(where, "activationTarget", raw.get("activationTarget")) or 0.0,
        metric_type="Value" if metric_type == "Value" else "AverageValue",
    )


def _number(where: str, key: str, value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(str(value))
    except ValueError as e:
        raise ScaledObjectError(f"{where}: {key} {value!r} is not a number") from e
    if not math.isfinite(number):
        raise ScaledObjectError(f"{where}: {key} {value!r} is not a finite number")
    return number
