"""scheduler.metrics: the fleet's sweep and delivery counts as metric families, each
counting one kind of thing, and nothing stale while Redis does not answer."""

from __future__ import annotations

import redis
from prometheus_client import CollectorRegistry, generate_latest

from scheduler.dispatch import OUTCOMES
from scheduler.metrics import DEFAULT_ROWS, HELD, HELD_AGE, SWEPT, SchedulerCollector, Totals


def test_each_sweep_count_is_a_series_of_a_metric_for_its_kind() -> None:
    totals = Totals(
        swept={
            "jobs_reproduced": 3,
            "jobs_expired": 2,
            "partitions_dropped": 7,
            "batches_deleted": 1,
        },
        last_run={"expiry": 1700000000.0},
        attempts={"delivered": 5, "refused": 1},
        gauges={HELD: 2, HELD_AGE: 86400.0, DEFAULT_ROWS + "jobs": 4},
    )
    registry = CollectorRegistry()
    registry.register(SchedulerCollector(lambda: totals))

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("inferfleet_sweep_jobs_total", action="reproduced") == 3
    assert value("inferfleet_sweep_jobs_total", action="expired") == 2
    assert value("inferfleet_sweep_partitions_total", action="dropped") == 7
    assert value("inferfleet_sweep_partitions_total", action="created") == 0
    assert value("inferfleet_sweep_partitions_held") == 2
    assert value("inferfleet_sweep_oldest_held_partition_age_seconds") == 86400
    assert value("inferfleet_partition_default_rows", table="jobs") == 4
    assert value("inferfleet_sweep_batches_deleted_total") == 1
    assert value("inferfleet_sweep_idempotency_keys_deleted_total") == 0
    assert value("inferfleet_sweep_last_run_timestamp_seconds", sweep="expiry") == 1700000000
    assert value("inferfleet_sweep_last_run_timestamp_seconds", sweep="retention") is None
    assert value("inferfleet_webhook_delivery_attempts_total", outcome="delivered") == 5
    assert value("inferfleet_webhook_delivery_attempts_total", outcome="refused") == 1
    for outcome in OUTCOMES:  # every outcome has a series, counted or not
        assert value("inferfleet_webhook_delivery_attempts_total", outcome=outcome) is not None
    # Every key a sweep reports lands in exactly one series.
    assert len({(name, label) for name, label in SWEPT.values()}) == len(SWEPT)


def test_nothing_stale_is_served_while_redis_does_not_answer() -> None:
    def down() -> Totals:
        raise redis.ConnectionError("Redis is down")

    registry = CollectorRegistry()
    registry.register(SchedulerCollector(down))
    text = generate_latest(registry).decode()

    assert "# TYPE inferfleet_sweep_jobs_total counter" in text
    assert not [line for line in text.splitlines() if line and not line.startswith("#")]
