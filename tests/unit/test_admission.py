"""api.plumbing.admission: the lag arithmetic, the cache, and the refusal, with a fake measure."""

from __future__ import annotations

import asyncio

import pytest
from kafka.errors import KafkaConnectionError

from api.plumbing.admission import Admission
from api.plumbing.metrics import ApiMetrics
from api.plumbing.problems import ProblemError
from inferfleet.clients.grouplag import group_lag as backlog
from inferfleet.settings import load_settings


@pytest.mark.parametrize(
    ("end", "beginning", "committed", "expected"),
    [
        pytest.param({0: 10, 1: 5}, {0: 0, 1: 0}, {0: 4, 1: 5}, 6, id="committed"),
        pytest.param({0: 10, 1: 5}, {0: 0, 1: 0}, {}, 15, id="never-committed"),
        pytest.param({0: 10, 1: 5}, {0: 3, 1: 2}, {1: 4}, 8, id="partly-committed"),
        pytest.param({0: 10}, {0: 8}, {0: 2}, 2, id="commit-before-retention"),
        pytest.param({0: 0, 1: 0}, {0: 0, 1: 0}, {}, 0, id="empty"),
        pytest.param({}, {}, {}, 0, id="no-partitions"),
        pytest.param({0: 10}, {0: 0}, {0: 10}, 0, id="caught-up"),
    ],
)
def test_backlog_counts_what_the_group_has_not_committed(
    end: dict[int, int], beginning: dict[int, int], committed: dict[int, int], expected: int
) -> None:
    assert backlog(end, beginning, committed) == expected


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Measure:
    """Lags to answer, per topic; counts the calls, like asking Kafka."""

    def __init__(self, lag: int) -> None:
        self.lag = lag
        self.calls: list[str] = []
        self.down = False

    def __call__(self, topic: str) -> int:
        self.calls.append(topic)
        if self.down:
            raise KafkaConnectionError("no broker answers")
        return self.lag


def admission(measure: Measure, clock: Clock, metrics: ApiMetrics, max_lag: int = 100) -> Admission:
    settings = load_settings(admission_max_lag=max_lag, admission_check_s=2.0, retry_after_s=7)
    return Admission(settings, measure, metrics, clock=clock)


def admit(gate: Admission, model: str) -> None:
    asyncio.run(gate.admit(model))


def test_a_topic_within_the_limit_is_admitted() -> None:
    measure = Measure(lag=100)

    admit(admission(measure, Clock(), ApiMetrics()), "fraud")

    assert measure.calls == ["inferfleet.jobs.fraud.interactive"]


def test_a_topic_past_the_limit_is_refused_with_429_naming_model_and_lag() -> None:
    metrics = ApiMetrics()

    with pytest.raises(ProblemError) as caught:
        admit(admission(Measure(lag=101), Clock(), metrics), "fraud")

    problem = caught.value
    assert problem.status == 429
    assert problem.headers == {"Retry-After": "7"}
    assert "'fraud'" in problem.detail
    assert "101" in problem.detail
    rejected = metrics.registry.get_sample_value(
        "inferfleet_api_jobs_rejected_total", {"reason": "backlog"}
    )
    assert rejected == 1


def test_the_lag_is_measured_once_per_topic_per_check_interval() -> None:
    measure, clock = Measure(lag=5), Clock()
    gate = admission(measure, clock, ApiMetrics())

    for _ in range(3):
        admit(gate, "fraud")
    admit(gate, "other")
    clock.now += 1.9
    admit(gate, "fraud")
    clock.now += 0.1
    admit(gate, "fraud")

    assert measure.calls == [
        "inferfleet.jobs.fraud.interactive",
        "inferfleet.jobs.other.interactive",
        "inferfleet.jobs.fraud.interactive",
    ]


def test_a_cached_lag_refuses_until_it_is_measured_again() -> None:
    measure, clock = Measure(lag=500), Clock()
    gate = admission(measure, clock, ApiMetrics())

    with pytest.raises(ProblemError):
        admit(gate, "fraud")
    measure.lag = 0
    with pytest.raises(ProblemError):
        admit(gate, "fraud")
    clock.now += 2.0
    admit(gate, "fraud")


def test_jobs_are_admitted_when_kafka_cannot_be_asked_and_it_is_not_asked_again_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    measure, clock = Measure(lag=500), Clock()
    measure.down = True
    gate = admission(measure, clock, ApiMetrics())

    admit(gate, "fraud")
    admit(gate, "fraud")

    assert len(measure.calls) == 1
    assert "cannot measure the lag of inferfleet.jobs.fraud.interactive" in caplog.text
    assert gate.lag("inferfleet.jobs.fraud.interactive") is None


def test_a_max_lag_of_0_turns_admission_off() -> None:
    measure = Measure(lag=10**9)

    admit(admission(measure, Clock(), ApiMetrics(), max_lag=0), "fraud")

    assert measure.calls == []


def test_requests_that_miss_the_cache_together_wait_on_one_measurement() -> None:
    measure = Measure(lag=5)
    gate = admission(measure, Clock(), ApiMetrics())

    async def many() -> None:
        await asyncio.gather(*(gate.admit("fraud") for _ in range(20)))

    asyncio.run(many())

    assert measure.calls == ["inferfleet.jobs.fraud.interactive"]
