"""api.plumbing.readiness: reports from background checks, their age, and checks that hang."""

from __future__ import annotations

import asyncio
import threading

from api.plumbing.readiness import CHECK_TIMEOUT_S, Readiness, Report


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_nothing_is_ready_before_the_first_check() -> None:
    readiness = Readiness({"postgres": lambda: "ok"}, interval_s=2, clock=Clock())

    report = readiness.report()

    assert not report.ready
    assert report.checks == {"postgres": "unavailable: not checked yet"}


def test_the_report_is_the_last_check_until_it_is_too_old() -> None:
    clock = Clock()
    answers = {"postgres": "ok", "kafka": "ok"}
    readiness = Readiness(
        {name: (lambda name=name: answers[name]) for name in answers}, interval_s=2, clock=clock
    )

    asyncio.run(readiness.check())
    answers["kafka"] = "unavailable: KafkaConnectionError"
    still = readiness.report()
    asyncio.run(readiness.check())
    failing = readiness.report()
    clock.now += readiness.max_age_s + 1
    stale = readiness.report()

    assert still == Report({"postgres": "ok", "kafka": "ok"}, 1000.0)
    assert still.ready
    assert failing.checks == {"postgres": "ok", "kafka": "unavailable: KafkaConnectionError"}
    assert not failing.ready
    assert not stale.ready
    assert set(stale.checks) == {"postgres", "kafka"}
    assert all(answer.startswith("unavailable: last checked") for answer in stale.checks.values())
    readiness.close()


def test_a_check_that_does_not_answer_counts_as_unavailable() -> None:
    hung = threading.Event()
    readiness = Readiness({"postgres": lambda: "ok", "kafka": lambda: str(hung.wait(30))}, 2)

    try:
        report = asyncio.run(readiness.check())
    finally:
        hung.set()
        readiness.close()

    assert report.checks == {
        "postgres": "ok",
        "kafka": f"unavailable: no answer within {CHECK_TIMEOUT_S:g} s",
    }
