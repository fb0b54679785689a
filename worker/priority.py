"""What the batch lane gives up while interactive jobs come beside it: the GIL sooner,
and the decoding of its units on the consumer side.

The interactive lane counts as active beside the batch while both lanes had a unit
handed off within the last `active_s`. Meanwhile:

- The GIL changes hands every 0.5 ms instead of every 5 ms. A thread back from I/O (an
  interactive unit's claim or result, the consumer side's poll of the interactive lane)
  needs the GIL again and gets it only once the thread holding it is told to let go,
  at each round trip, while the batch lane's threads decode and encode.
- A batch unit is handed off undecoded and its execution thread decodes it
  (`worker.units.Unit.decode`), so the consumer side, free 20-50 ms sooner per batch
  unit, is back polling the interactive lane; otherwise the consumer side decodes each
  unit before the hand-off, while the unit before it runs, which keeps decoding off
  the execution threads.

Neither holds for one lane alone: decoding on the execution threads cost a backlog of
interactive jobs a tenth of its rate or more, and a batch alone has no interactive job
to give way to (README, Benchmarks: what each bought and cost).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable

from inferfleet.clients.topics import LANES, Lane
from worker.lanes import INTERACTIVE_RECENT_S

# The switch interval while interactive jobs come beside a batch.
INTERACTIVE_SWITCH_S = 0.0005


class InteractivePriority:
    """Whether interactive jobs come beside a batch, and the switch interval that goes
    with it; the pipeline's consumer side calls it (one thread)."""

    def __init__(
        self,
        switch_s: float = INTERACTIVE_SWITCH_S,
        active_s: float = INTERACTIVE_RECENT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._switch_s = switch_s
        self._active_s = active_s
        self._clock = clock
        self._normal_s = sys.getswitchinterval()
        self._last: dict[Lane, float] = {}  # when each lane last had a unit handed off
        self.active = False

    def handed_off(self, lane: Lane) -> None:
        """A unit of `lane` was handed off."""
        self._last[lane] = self._clock()
        self.tick()

    def tick(self) -> None:
        """Active while both lanes had a unit handed off within `active_s`."""
        now = self._clock()
        active = all(now - self._last.get(lane, -math.inf) < self._active_s for lane in LANES)
        if active != self.active:
            sys.setswitchinterval(self._switch_s if active else self._normal_s)
            self.active = active

    def reset(self) -> None:
        """Not active: the switch interval it found again."""
        self._last.clear()
        self.tick()
