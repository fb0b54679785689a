"""worker.priority: interactive jobs count as coming beside a batch while both lanes had
a unit handed off lately, and the GIL changes hands sooner meanwhile."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from worker.priority import InteractivePriority


@pytest.fixture(autouse=True)
def normal_interval() -> Iterator[None]:
    before = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    yield
    sys.setswitchinterval(before)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_active_while_both_lanes_had_a_unit_lately() -> None:
    clock = Clock()
    priority = InteractivePriority(switch_s=0.0005, active_s=1.0, clock=clock)

    priority.handed_off("interactive")
    priority.handed_off("interactive")
    assert not priority.active, "interactive jobs alone: nothing to give way to"
    assert sys.getswitchinterval() == pytest.approx(0.005)
    clock.now += 0.5
    priority.handed_off("batch")
    assert priority.active
    assert sys.getswitchinterval() == pytest.approx(0.0005)
    clock.now += 0.4
    priority.handed_off("batch")  # the interactive unit is 0.9 s old: still active
    assert priority.active
    clock.now += 0.2
    priority.tick()
    assert not priority.active, "no interactive unit for a second"
    assert sys.getswitchinterval() == pytest.approx(0.005)


def test_batch_units_alone_change_nothing() -> None:
    clock = Clock()
    priority = InteractivePriority(switch_s=0.0005, clock=clock)
    for _ in range(3):
        priority.handed_off("batch")
        clock.now += 0.1
    assert not priority.active
    assert sys.getswitchinterval() == pytest.approx(0.005)


def test_reset_restores_the_interval_it_found() -> None:
    sys.setswitchinterval(0.002)
    priority = InteractivePriority(switch_s=0.0005, clock=Clock())
    priority.handed_off("batch")
    priority.handed_off("interactive")
    assert sys.getswitchinterval() == pytest.approx(0.0005)
    priority.reset()
    assert not priority.active
    assert sys.getswitchinterval() == pytest.approx(0.002)
