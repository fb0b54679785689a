"""The worker as a pipeline: the next unit's Kafka fetch and decoding overlap the
current units' claim, inference and Postgres writes.

Two sides, as dramatiq splits its consumer and worker threads:

- The consumer side is the thread that calls `advance` (the worker's loop). It alone
  touches the KafkaConsumer, which is not thread-safe: it polls, splits the records
  into units (`worker.units`), one per lane, hands them off, and commits the offsets of
  units the execution side reports finished.
- The execution side is one thread per lane (`interactive`, `batch`), each taking its
  lane's units from its hand-off queue in turn and running each whole (claim, run,
  write results, send retries and dead letters).
- The consumer side decodes each unit before handing it off, while the unit before it
  runs, except a batch unit while interactive jobs come beside the batch
  (`worker.priority`): its execution thread decodes it then, so that an interactive
  record arriving does not wait the 20-50 ms a batch unit's decoding takes.

What a caller may rely on:

- Offsets move only past written results: a unit's offsets are committed after its
  execution thread reported it finished, and a partition belongs to one lane, whose
  units run in the order they were polled, so each partition's committed offset only
  passes records whose results are in Postgres. A crash anywhere redelivers, as before.
- Each lane's queue holds at most `depth` units beside the one running, so a stalled
  execution side stops the polling soon after, and Kafka's `max_poll_interval_ms`
  still takes the partitions of a worker that stopped making progress.
- Interactive records never wait for batch records: they run on their own thread,
  beside the batch unit in hand rather than after it, and while they come beside a
  batch the GIL changes hands every 0.5 ms instead of 5 (`worker.priority`). While the
  batch queue is full the consumer side polls the interactive lane alone
  (`poll_interactive`), which the broker answers as soon as a record arrives, so an
  interactive record waits for the interactive unit before it and its share of the
  cores, not for a batch unit.
- A unit that fails (an outage, `TRANSIENT`) halts the execution side and drops the
  units waiting; `advance` raises the failure. The caller then calls `quiesce` (which
  also waits for the other lane's running unit), rewinds to the committed offsets (the
  dropped units' records come again) and `resume`s.
- Before a rebalance takes partitions away, every unit handed off is finished and its
  offsets committed (`finish_handed_off`, called inside the poll by the consumer's
  rebalance listener), so no partition moves with a result half-written behind a
  committed offset; a worker too slow for that loses the group and then writes
  nothing, its claims having gone to the new owner (`worker.persist`'s claim token).
  (kafka-python keeps the positions of the partitions a rebalance leaves in place, so
  units handed off for them stay valid.)
- `drain` (SIGTERM) finishes every unit handed off and commits it.
- `execute` is called from both execution threads at once: what it keeps per unit
  must be its thread's (`worker.main.Worker` does so).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from prometheus_client import Gauge

from inferfleet.clients.topics import LANES, Lane
from worker.priority import InteractivePriority
from worker.units import Partition, Unit, lane_parts, make_unit, unit_lane

log = logging.getLogger(__name__)

# How long the consumer side waits at a time: in a poll of the interactive lane while
# the batch lane's queue is full, else for room in the queues.
INTERACTIVE_CHECK_S = 0.02


class Source(Protocol):
    """The consumer-side Kafka calls the pipeline makes (`worker.consume.JobConsumer`)."""

    on_revoke: Callable[[], None] | None

    def poll(self) -> list[Any]: ...

    def poll_interactive(self, timeout_ms: int) -> list[Any]: ...

    def commit_offsets(self, offsets: dict[Partition, int]) -> bool: ...


class Pipeline:
    """A consumer side (the thread calling `advance`) and an execution side (a thread
    per lane) with a bounded hand-off queue per lane between them (module docstring)."""

    def __init__(
        self,
        source: Source,
        execute: Callable[[Unit], object],
        depth: int = 1,
        waiting: Gauge | None = None,
    ) -> None:
        self._source = source
        self._waiting = waiting  # set to the queues' length as it changes
        self._execute = execute
        self._depth = depth
        self._cond = threading.Condition()
        self._queues: dict[Lane, deque[Unit]] = {lane: deque() for lane in LANES}
        self._running: set[Lane] = set()
        # Units the execution side ended, in order, with what each raised.
        self._done: deque[tuple[Unit, BaseException | None]] = deque()
        self._halted = False  # after a failure, until `resume`
        self._closing = False
        source.on_revoke = self.finish_handed_off
        self._threads = [
            threading.Thread(
                target=self._work, args=(lane,), name=f"worker-execute-{lane}", daemon=True
            )
            for lane in LANES
        ]
        for thread in self._threads:
            thread.start()
        # What the batch lane gives up while interactive jobs come beside it.
        self._priority = InteractivePriority()

    # The consumer side.

    def advance(self) -> None:
        """One step: commit what finished; then poll and hand off a unit per lane if
        every lane's queue has room; if only the interactive one has, wait up to
        `INTERACTIVE_CHECK_S` in a poll of the interactive lane and hand off what it
        returns; else wait up to that long for room.

        Raises what a unit raised (the execution side is then halted: `quiesce`).
        """
        self._priority.tick()
        self._settle()
        interactive_room = self._room("interactive")
        if interactive_room and self._room("batch"):
            for part in lane_parts(self._source.poll()):
                self._hand_off(make_unit(part))
        elif interactive_room:
            records = self._source.poll_interactive(int(INTERACTIVE_CHECK_S * 1000))
            if records:
                self._hand_off(make_unit(records))
        else:
            with self._cond:
                self._cond.wait_for(
                    lambda: bool(self._done) or self._halted or all(map(self._fits, LANES)),
                    timeout=INTERACTIVE_CHECK_S,
                )

    def quiesce(self) -> None:
        """Drop the units waiting, wait for the running ones to end, and forget what
        ended uncommitted: after it, the caller rewinds to the committed offsets, so
        every record not committed comes again (finished jobs are then skipped)."""
        with self._cond:
            for queue in self._queues.values():
                queue.clear()
            self._count()
            self._cond.wait_for(lambda: not self._running)
            self._done.clear()

    def resume(self) -> None:
        """Let the execution side go on after a failure (once the caller rewound)."""
        with self._cond:
            self._halted = False
            self._cond.notify_all()

    def finish_handed_off(self) -> None:
        """Run every unit handed off to its end and commit those that finished; a
        failure stays for `advance` to raise. Called before a rebalance moves partitions."""
        self._wait_idle()
        try:
            self._settle()
        except Exception as e:  # noqa: BLE001 - the loop meets it again at its next step
            log.warning("a unit failed before the rebalance; its records come again: %r", e)

    def drain(self) -> None:
        """Finish every unit handed off and commit it (raises what a unit raised)."""
        self._wait_idle()
        self._settle()

    def close(self) -> None:
        """Stop the execution side after the units it runs (the caller drained first)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()
        self._priority.reset()

    def _room(self, lane: Lane) -> bool:
        with self._cond:
            return not self._halted and self._fits(lane)

    def _fits(self, lane: Lane) -> bool:
        """Whether `lane`'s queue has room (the caller holds `_cond`)."""
        return len(self._queues[lane]) < self._depth

    def _hand_off(self, unit: Unit) -> None:
        lane = unit_lane(unit)
        self._priority.handed_off(lane)
        if lane == "interactive" or not self._priority.active:
            unit.decode()
        with self._cond:
            if self._halted:  # the rewind brings these records back
                return
            self._queues[lane].append(unit)
            self._count()
            self._cond.notify_all()

    def _settle(self) -> None:
        """Commit each finished unit in order; raise the first failure (left in place)."""
        while True:
            with self._cond:
                if not self._done:
                    return
                unit, error = self._done[0]
                if error is not None:
                    raise error
                self._done.popleft()
            self._source.commit_offsets(unit.offsets)

    def _count(self) -> None:
        if self._waiting is not None:
            self._waiting.set(sum(len(queue) for queue in self._queues.values()))

    def _wait_idle(self) -> None:
        with self._cond:
            self._cond.wait_for(
                lambda: not self._running and (self._halted or not any(self._queues.values()))
            )

    # The execution side.

    def _work(self, lane: Lane) -> None:
        queue = self._queues[lane]
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closing or (bool(queue) and not self._halted))
                if self._closing:
                    return
                unit = queue.popleft()
                self._count()
                self._running.add(lane)
            error: BaseException | None = None
            try:
                self._execute(unit)
            except BaseException as e:  # noqa: BLE001 - reported to the consumer side
                error = e
            with self._cond:
                self._running.discard(lane)
                self._done.append((unit, error))
                if error is not None:
                    self._halted = True
                    for waiting in self._queues.values():
                        waiting.clear()
                    self._count()
                self._cond.notify_all()
