"""The worker as a pipeline: the next unit's Kafka fetch and decoding overlap the
current unit's claim, inference and Postgres writes.

Two sides, as dramatiq splits its consumer and worker threads:

- The consumer side is the thread that calls `advance` (the worker's loop). It alone
  touches the KafkaConsumer, which is not thread-safe: it polls, decodes the records
  into a `Unit` (`worker.units`), hands it off, and commits the offsets of units the
  execution side reports finished.
- The execution side is one thread that takes units from the hand-off queue in turn
  and runs each whole (claim, run, write results, send retries and dead letters).

What a caller may rely on:

- Offsets move only past written results: a unit's offsets are committed after the
  execution side reported it finished, and units that share a partition run in the
  order they were polled, so each partition's committed offset only passes records
  whose results are in Postgres. A crash anywhere redelivers, as before.
- The hand-off queue holds at most `depth` units beside the one running, so a stalled
  execution side stops the polling soon after, and Kafka's `max_poll_interval_ms`
  still takes the partitions of a worker that stopped making progress.
- Interactive records overtake: while the queue is full, the consumer side looks at
  the interactive lane every `INTERACTIVE_CHECK_S`; records found there go into one
  more unit that joins the queue ahead of the batch-lane units waiting
  (`worker.units.queue_position`); so do the interactive records of a poll that
  also holds batch records, as a unit of their own (`worker.units.hand_off_parts`).
  With the poller's smaller batch share while the lane is active
  (`worker.lanes.batch_room`), an interactive job waits for the small unit running
  and its own.
- A unit that fails (an outage, `TRANSIENT`) halts the execution side and drops the
  units waiting; `advance` raises the failure. The caller then calls `quiesce`, rewinds
  to the committed offsets (the dropped units' records come again) and `resume`s.
- Before a rebalance takes partitions away, every unit handed off is finished and its
  offsets committed (`finish_handed_off`, called inside the poll by the consumer's
  rebalance listener), so no partition moves with a result half-written behind a
  committed offset; a worker too slow for that loses the group and then writes
  nothing, its claims having gone to the new owner (`worker.persist`'s claim token).
  (kafka-python keeps the positions of the partitions a rebalance leaves in place, so
  units handed off for them stay valid.)
- `drain` (SIGTERM) finishes every unit handed off and commits it.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from prometheus_client import Gauge

from worker.units import Partition, Unit, hand_off_parts, make_unit, queue_position

log = logging.getLogger(__name__)

# How often the consumer side looks for interactive records while the queue is full.
INTERACTIVE_CHECK_S = 0.02


class Source(Protocol):
    """The consumer-side Kafka calls the pipeline makes (`worker.consume.JobConsumer`)."""

    on_revoke: Callable[[], None] | None

    def poll(self) -> list[Any]: ...

    def poll_interactive(self) -> list[Any]: ...

    def commit_offsets(self, offsets: dict[Partition, int]) -> bool: ...


class Pipeline:
    """A consumer side (the thread calling `advance`) and an execution side (a thread of
    its own) with a bounded hand-off queue between them (module docstring)."""

    def __init__(
        self,
        source: Source,
        execute: Callable[[Unit], object],
        depth: int = 1,
        waiting: Gauge | None = None,
    ) -> None:
        self._source = source
        self._waiting = waiting  # set to the queue's length as it changes
        self._execute = execute
        self._depth = depth
        self._cond = threading.Condition()
        self._queue: deque[Unit] = deque()
        self._running = False
        # Units the execution side ended, in order, with what each raised.
        self._done: deque[tuple[Unit, BaseException | None]] = deque()
        self._halted = False  # after a failure, until `resume`
        self._closing = False
        source.on_revoke = self.finish_handed_off
        self._thread = threading.Thread(target=self._work, name="worker-execute", daemon=True)
        self._thread.start()

    # The consumer side.

    def advance(self) -> None:
        """One step: commit what finished; then poll and hand off a unit if the queue
        has room, or else wait up to `INTERACTIVE_CHECK_S` for room and hand off the
        interactive records that arrived meanwhile, ahead of the batch units waiting.

        Raises what a unit raised (the execution side is then halted: `quiesce`).
        """
        self._settle()
        if self._room(0):
            records = self._source.poll()
            with self._cond:
                queue_empty = not self._queue
            for part in hand_off_parts(records, queue_empty):
                self._hand_off(make_unit(part))
            return
        with self._cond:
            self._cond.wait_for(
                lambda: bool(self._done) or self._halted or len(self._queue) < self._depth,
                timeout=INTERACTIVE_CHECK_S,
            )
        if self._room(1) and not self._room(0) and not self._done:
            records = self._source.poll_interactive()
            if records:
                self._hand_off(make_unit(records))

    def quiesce(self) -> None:
        """Drop the units waiting, wait for the running one to end, and forget what
        ended uncommitted: after it, the caller rewinds to the committed offsets, so
        every record not committed comes again (finished jobs are then skipped)."""
        with self._cond:
            self._queue.clear()
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
        """Stop the execution side after the unit it runs (the caller drained first)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join()

    def _room(self, extra: int) -> bool:
        with self._cond:
            return not self._halted and len(self._queue) < self._depth + extra

    def _hand_off(self, unit: Unit) -> None:
        with self._cond:
            if self._halted:  # the rewind brings these records back
                return
            at = queue_position(
                [u.partitions for u in self._queue], unit.partitions, unit.interactive
            )
            self._queue.insert(at, unit)
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
            self._waiting.set(len(self._queue))

    def _wait_idle(self) -> None:
        with self._cond:
            self._cond.wait_for(lambda: not self._running and (not self._queue or self._halted))

    # The execution side.

    def _work(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(
                    lambda: self._closing or (bool(self._queue) and not self._halted)
                )
                if self._closing:
                    return
                unit = self._queue.popleft()
                self._count()
                self._running = True
            error: BaseException | None = None
            try:
                self._execute(unit)
            except BaseException as e:  # noqa: BLE001 - reported to the consumer side
                error = e
            with self._cond:
                self._running = False
                self._done.append((unit, error))
                if error is not None:
                    self._halted = True
                    self._queue.clear()
                    self._count()
                self._cond.notify_all()
