"""The queue probe's arithmetic: where the group resumes, lag, rate and drain time."""

from __future__ import annotations

import math

import pytest

from inferfleet.clients.grouplag import lag, resume_offsets
from inferfleet.settings import Settings
from worker.metrics import QueueProbe, Throughput, WorkerMetrics, drain_seconds, observe_all


@pytest.mark.parametrize(
    ("end", "beginning", "committed", "resume", "waiting"),
    [
        # committed offsets: the group resumes there
        ({0: 10, 1: 5}, {0: 0, 1: 0}, {0: 4, 1: 5}, {0: 4, 1: 5}, 6),
        # no commit: the worker starts from the earliest record, all of it is lag
        ({0: 10, 1: 5}, {0: 2, 1: 0}, {}, {0: 2, 1: 0}, 13),
        # retention deleted the committed offset: resume at the earliest left
        ({0: 10}, {0: 7}, {0: 3}, {0: 7}, 3),
        # an empty partition never committed: no lag
        ({0: 0}, {0: 0}, {}, {0: 0}, 0),
    ],
)
def test_resume_offsets_and_lag(
    end: dict[int, int],
    beginning: dict[int, int],
    committed: dict[int, int],
    resume: dict[int, int],
    waiting: int,
) -> None:
    assert resume_offsets(end, beginning, committed) == resume
    assert lag(end, resume) == waiting


def test_throughput_is_the_advance_of_resume_offsets_per_second() -> None:
    t = Throughput(window_s=60)
    assert t.rate() is None
    t.add(0.0, 100)
    assert t.rate() is None
    t.add(15.0, 400)
    assert t.rate() == 20.0
    t.add(30.0, 400)
    assert t.rate() == 10.0


def test_throughput_forgets_samples_older_than_its_window() -> None:
    t = Throughput(window_s=30)
    for second, consumed in [(0, 0), (15, 3000), (30, 3000), (45, 3000), (60, 3000)]:
        t.add(float(second), consumed)
    assert t.rate() == 0.0


def test_throughput_starts_again_when_offsets_go_back() -> None:
    t = Throughput()
    t.add(0.0, 1000)
    t.add(10.0, 2000)
    t.add(20.0, 5)  # the topic was recreated
    assert t.rate() is None
    t.add(30.0, 105)
    assert t.rate() == 10.0


@pytest.mark.parametrize(
    ("waiting", "rate", "seconds"),
    [(0, None, 0.0), (0, 0.0, 0.0), (1000, 100.0, 10.0), (1000, 0.0, math.inf), (5, None, None)],
)
def test_drain_seconds(waiting: int, rate: float | None, seconds: float | None) -> None:
    assert drain_seconds(waiting, rate) == seconds


def test_the_probe_watches_both_lanes_of_every_served_model() -> None:
    probe = QueueProbe(Settings(worker_models=["fraud", "minilm"]), WorkerMetrics())
    assert probe.topics == [
        "inferfleet.jobs.fraud.interactive",
        "inferfleet.jobs.fraud.batch",
        "inferfleet.jobs.minilm.interactive",
        "inferfleet.jobs.minilm.batch",
    ]


@pytest.mark.parametrize(
    "amounts",
    [
        [],
        [0.3],
        [0.0, 0.01, 0.0100001, 1, 1.5, 3600, 3600.5, 1e9],  # on and beside the bounds
        [0.2 * i for i in range(5000)],
    ],
)
def test_observing_all_at_once_gives_what_observing_each_gives(amounts: list[float]) -> None:
    one_by_one, all_at_once = WorkerMetrics(), WorkerMetrics()
    each = one_by_one.submit_to_result_seconds.labels("m", "batch")
    for a in amounts:
        each.observe(a)
    observe_all(all_at_once.submit_to_result_seconds.labels("m", "batch"), amounts)

    def samples(metrics: WorkerMetrics) -> list[tuple[str, dict[str, str], float]]:
        return [
            (s.name, s.labels, s.value)
            for family in metrics.registry.collect()
            if family.name == "inferfleet_worker_submit_to_result_seconds"
            for s in family.samples
            if not s.name.endswith("_created")
        ]

    got, want = samples(all_at_once), samples(one_by_one)
    assert [(n, labels) for n, labels, _ in got] == [(n, labels) for n, labels, _ in want]
    assert [v for _, _, v in got] == pytest.approx([v for _, _, v in want])
