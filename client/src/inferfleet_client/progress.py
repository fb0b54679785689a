"""A progress line on stderr (counts, rate, ETA), and the pure arithmetic behind it.

On a terminal the line is redrawn in place at most every `interval_s`; elsewhere (a log,
a CI job) a full line is written at most every `log_interval_s`, so logs stay short.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TextIO

WIDTH = 24  # characters of the bar


def duration(seconds: float) -> str:
    """`seconds` as `42s`, `3m05s` or `2h03m`."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def count(n: float) -> str:
    """`n` as `950`, `12.3k` or `4.56M`."""
    if n < 1000:
        return f"{n:.0f}" if n == int(n) else f"{n:.1f}"
    if n < 1_000_000:
        return f"{n / 1000:.1f}k"
    return f"{n / 1_000_000:.2f}M"


def eta(done: float, total: float, rate: float) -> float | None:
    """Seconds left at `rate` units per second, or None when it cannot be told."""
    if total <= 0 or done >= total:
        return 0.0 if total > 0 else None
    if rate <= 0:
        return None
    return (total - done) / rate


@dataclass(frozen=True)
class Snapshot:
    """What the line shows: `done` of `total` units, their rate, the time left."""

    label: str
    done: float
    total: float
    rate: float
    eta_s: float | None
    unit: str = ""


def render(s: Snapshot) -> str:
    """`label [#####.....]  45%  4.5k/10.0k  1.2k/s  ETA 5s`."""
    fraction = 0.0 if s.total <= 0 else min(1.0, s.done / s.total)
    filled = round(fraction * WIDTH)
    unit = f" {s.unit}" if s.unit else ""
    parts = [
        f"{s.label} [{'#' * filled}{'.' * (WIDTH - filled)}]",
        f"{fraction * 100:3.0f}%",
        f"{count(s.done)}/{count(s.total)}{unit}",
        f"{count(s.rate)}{unit}/s",
        "ETA ?" if s.eta_s is None else f"ETA {duration(s.eta_s)}",
    ]
    return "  ".join(parts)


class Rate:
    """Units per second over the last `window_s` seconds of updates."""

    def __init__(self, window_s: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.window_s = window_s
        self.clock = clock
        self.points: deque[tuple[float, float]] = deque()

    def update(self, done: float) -> float:
        """Record `done` now; the rate over the window."""
        now = self.clock()
        self.points.append((now, done))
        while len(self.points) > 2 and now - self.points[1][0] >= self.window_s:
            self.points.popleft()
        (t0, d0), (t1, d1) = self.points[0], self.points[-1]
        return 0.0 if t1 <= t0 else max(0.0, (d1 - d0) / (t1 - t0))


class ProgressLine:
    """A progress line of one operation on `stream` (stderr by default)."""

    def __init__(
        self,
        label: str,
        *,
        unit: str = "",
        stream: TextIO | None = None,
        enabled: bool = True,
        interval_s: float = 0.2,
        log_interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.unit = unit
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = self.stream.isatty()
        self.interval_s = interval_s if self.tty else log_interval_s
        self.clock = clock
        self.rate = Rate(clock=clock)
        self.last_drawn = float("-inf")
        self.shown = ""
        self.drawn = ""

    def update(self, done: float, total: float, finish_at: datetime | None = None) -> None:
        """Show `done` of `total`; `finish_at` (the server's estimate) replaces the ETA
        from the measured rate when given."""
        rate = self.rate.update(done)
        left = eta(done, total, rate)
        if finish_at is not None:
            left = max(0.0, finish_at.timestamp() - time.time())
        self.shown = render(Snapshot(self.label, done, total, rate, left, self.unit))
        now = self.clock()
        if self.enabled and now - self.last_drawn >= self.interval_s:
            self._draw()
            self.last_drawn = now

    def close(self) -> None:
        """Draw the last state and end the line."""
        if self.enabled and self.shown:
            if self.shown != self.drawn:
                self._draw()
            if self.tty:
                self.stream.write("\n")
            self.stream.flush()

    def _draw(self) -> None:
        self.drawn = self.shown
        if self.tty:
            self.stream.write("\r\x1b[2K" + self.shown)
        else:
            self.stream.write(self.shown + "\n")
        self.stream.flush()
