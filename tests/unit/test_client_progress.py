"""The CLI's progress line: counts, rate and ETA, formatted (inferfleet_client.progress)."""

from __future__ import annotations

import io

import pytest

from inferfleet_client.progress import (
    ProgressLine,
    Rate,
    Snapshot,
    count,
    duration,
    eta,
    render,
)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.4, "0s"), (42, "42s"), (59.6, "1m00s"), (185, "3m05s"), (7380, "2h03m")],
)
def test_durations(seconds: float, text: str) -> None:
    assert duration(seconds) == text


@pytest.mark.parametrize(
    ("n", "text"), [(0, "0"), (950, "950"), (2.5, "2.5"), (12_345, "12.3k"), (4_560_000, "4.56M")]
)
def test_counts(n: float, text: str) -> None:
    assert count(n) == text


@pytest.mark.parametrize(
    ("done", "total", "rate", "left"),
    [
        (50, 100, 10, 5.0),
        (100, 100, 0, 0.0),
        (10, 100, 0, None),  # nothing measured yet
        (0, 0, 5, None),  # an empty total has no ETA
    ],
)
def test_eta(done: float, total: float, rate: float, left: float | None) -> None:
    assert eta(done, total, rate) == left


def test_render_shows_bar_percent_counts_rate_and_eta() -> None:
    line = render(Snapshot("bat_1", 4500, 10_000, 1200, 5, "lines"))

    assert line == (
        "bat_1 [###########.............]   45%  4.5k/10.0k lines  1.2k lines/s  ETA 5s"
    )
    assert render(Snapshot("x", 0, 10, 0, None)).endswith("ETA ?")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_rate_is_measured_over_a_sliding_window() -> None:
    clock = Clock()
    rate = Rate(window_s=10, clock=clock)
    assert rate.update(0) == 0.0
    clock.now = 5
    assert rate.update(500) == 100.0
    clock.now = 30  # the first points fall out of the window: only recent speed counts
    rate.update(600)
    clock.now = 40
    assert rate.update(1600) == 100.0


def test_off_a_terminal_lines_are_written_at_most_every_log_interval() -> None:
    clock = Clock()
    out = io.StringIO()
    line = ProgressLine("waiting", unit="jobs", stream=out, log_interval_s=10, clock=clock)
    for second in range(0, 25):
        clock.now = second
        line.update(second * 4, 100)
    line.close()

    written = out.getvalue().splitlines()
    assert len(written) == 4  # at 0, 10 and 20 s, and the last state at close
    assert written[-1].startswith("waiting [")
    assert "96/100 jobs" in written[-1]
    assert "\r" not in out.getvalue()


def test_a_disabled_line_writes_nothing() -> None:
    out = io.StringIO()
    line = ProgressLine("x", stream=out, enabled=False)
    line.update(1, 2)
    line.close()
    assert out.getvalue() == ""
