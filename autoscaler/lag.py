"""Consumer lag as KEDA 2.21's `kafka` scaler computes it (pkg/scalers/kafka_scaler.go).

Pure functions over offsets that `autoscaler.offsets` reads from Kafka. Each rule cites
the function of kafka_scaler.go it follows. KEDA looks at a partition's log-start
(earliest) offset in one case only: a partition without a committed offset under
`offsetResetPolicy: earliest` counts log end - log start since 2.21 (the log-end offset
before). A committed offset that retention has deleted still counts in full against the
log end (the API's admission check, which wants the real backlog, subtracts the earliest
offset instead).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from autoscaler.spec import KafkaTrigger

# (topic, partition) → the committed offset KEDA saw at its previous measurement.
Previous = Mapping[tuple[str, int], int]


@dataclass(frozen=True)
class PartitionOffsets:
    """One partition as Kafka reported it.

    `latest` is the log-end offset (None when Kafka's answer left the partition out);
    `committed` is the group's committed offset (None when the group has none, which the
    broker reports as -1); `earliest` is the log-start offset, read only where KEDA
    reads it (no committed offset, `offsetResetPolicy: earliest` and not
    `scaleToZeroOnInvalidOffset`), None elsewhere or when that read failed.
    """

    topic: str
    partition: int
    latest: int | None
    committed: int | None
    earliest: int | None = None


@dataclass(frozen=True)
class Lag:
    """One measurement of a trigger.

    `metric` is what the scaler reports to the HPA and to `scalingModifiers` formulas
    (after the partition cap, and never below 0); `with_persistent` is the uncapped sum
    that activation is judged on, negative when committed offsets run past the log end;
    `partitions` and `partitions_with_lag` are what the cap is computed from.
    """

    metric: int
    with_persistent: int
    partitions: int
    partitions_with_lag: int


def partition_lag(
    p: PartitionOffsets, trigger: KafkaTrigger, previous: Previous
) -> tuple[int, int]:
    """(lag, lag with persistent) of one partition: `getLagForPartition`.

    - No committed offset and `offsetResetPolicy: latest`: 1, or 0 with
      `scaleToZeroOnInvalidOffset` (the consumer would start at the end, so the scaler
      only signals that a consumer is needed).
    - No committed offset and `earliest`: 0 with `scaleToZeroOnInvalidOffset`, else the
      messages retention has kept, log end - log start (KEDA 2.21); the whole log-end
      offset when the log start could not be read (KEDA's fallback, and its rule
      before 2.21).
    - A partition missing from the log-end answer: 0.
    - Otherwise log-end minus committed; with `excludePersistentLag`, 0 for the first
      value while the committed offset has not moved since the previous measurement (a
      stuck consumer is not a reason to add consumers), the real lag for the second.
    """
    if p.committed is None:
        if trigger.scale_to_zero_on_invalid_offset:
            return 0, 0
        if trigger.offset_reset_policy == "latest":
            return 1, 1
    if p.latest is None:
        return 0, 0
    if p.committed is None:  # earliest
        retained = p.latest if p.earliest is None else p.latest - p.earliest
        return retained, retained
    lag = p.latest - p.committed
    if trigger.exclude_persistent_lag and previous.get((p.topic, p.partition)) == p.committed:
        return 0, lag
    return lag, lag


def remember(offsets: Sequence[PartitionOffsets], previous: Previous) -> dict[tuple[str, int], int]:
    """The committed offsets to compare with next time (`previousOffsets` in the scaler).

    Only committed offsets are remembered; a partition without one keeps its old entry.
    """
    out = dict(previous)
    for p in offsets:
        if p.committed is not None and p.latest is not None:
            out[(p.topic, p.partition)] = p.committed
    return out


def even_factor(lag: int, partitions: int, threshold: int) -> int:
    """The smallest divisor f of `partitions` with f * threshold ≥ lag, else `partitions`.

    getNextFactorThatBalancesConsumersToTopicPartitions: consumers that divide the
    partitions evenly.
    """
    for factor in (f for f in range(1, partitions + 1) if partitions % f == 0):
        if factor * threshold >= lag:
            return factor
    return partitions


def total_lag(
    offsets: Sequence[PartitionOffsets], trigger: KafkaTrigger, previous: Previous
) -> Lag:
    """The trigger's lag over all its partitions: `getTotalLag`.

    Unless `allowIdleConsumers` is set, the metric is capped so the HPA never asks for
    more consumers than there are partitions (or partitions with lag, with
    `limitToPartitionsWithLag`): when lag ÷ lagThreshold, in Go's integer division,
    exceeds that bound, the metric becomes bound * lagThreshold. Integer division lets a
    lag up to (bound + 1) * lagThreshold - 1 through uncapped, so the HPA may propose
    bound + 1. With `ensureEvenDistributionOfPartitions` the metric is first rounded up
    to a divisor of the partition count * lagThreshold.

    A partition whose committed offset is past its log end adds its negative lag to the
    sums as it is, but a total below 0 is reported as 0: `GetMetricsAndActivity` turns
    it into a metric with `GenerateMetricInMili`, which reports a negative value as 0
    (pkg/scalers/scaler.go), while activity is judged on the signed sum.
    """
    metric = persistent = with_lag = 0
    for p in offsets:
        lag, lag_with_persistent = partition_lag(p, trigger, previous)
        metric += lag
        persistent += lag_with_persistent
        if lag > 0:
            with_lag += 1
    partitions = len(offsets)
    threshold = trigger.lag_threshold
    if (
        not trigger.allow_idle_consumers
        or trigger.limit_to_partitions_with_lag
        or trigger.ensure_even_distribution_of_partitions
    ):
        bound = partitions
        if trigger.ensure_even_distribution_of_partitions:
            metric = even_factor(metric, partitions, threshold) * threshold
        if trigger.limit_to_partitions_with_lag:
            bound = with_lag
        if _go_div(metric, threshold) > bound:
            metric = bound * threshold
    return Lag(
        metric=max(metric, 0),
        with_persistent=persistent,
        partitions=partitions,
        partitions_with_lag=with_lag,
    )


def is_active(lag: Lag, trigger: KafkaTrigger) -> bool:
    """Activation: the lag with persistent lag included is above activationLagThreshold."""
    return lag.with_persistent > trigger.activation_lag_threshold


def _go_div(a: int, b: int) -> int:
    """Go's integer division, which truncates toward zero (Python's // floors)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q
