"""Group commit: submissions that arrive together are inserted, produced and recorded
as produced together, and each is answered on its own.

A submission (the rows and messages of one request, and its idempotency key) waits at
most `window_s` for others, or less once the waiting ones hold `max_jobs` jobs; a window
of 0 waits for nothing but still groups whatever is already waiting. A group is then:

1. one insert transaction of every row and every idempotency key (`GroupStore.insert`);
   a key some earlier submit holds, or one an earlier submission of the group holds,
   fails its submission alone with KeyTakenError, and none of its rows is inserted
   (a repeat of a key within the group gets KeyTakenError even if the submission that
   held it was refused: its caller then finds no job under the key);
2. one produce of every message, whose acknowledgements are awaited together
   (`Produce`, acks=all);
3. one `produced_at` update of the jobs Kafka acknowledged (`GroupStore.produced`),
   made after their submissions are answered: a job is safe once its row and its
   message are, and the update is the sweep's bookkeeping, so the answer does not wait
   for one more round trip to a database that is busy.

What a caller of `commit` may rely on:

- It returns once Kafka has acknowledged every message of its submission, or, rarely,
  once its jobs are known to run all the same (below). Its `produced_at` is set soon
  after, by the group's task (`close` waits for it); should that update fail or never
  run (a crash), the sweep produces the messages again after its grace period, and the
  worker's status guards make the copy harmless. A worker may claim a job first: its
  claim sets `produced_at`, and the update then leaves the row alone.
- One submission's failure never fails another's. An insert that fails for a reason
  that is not an outage (`outages`: the database did not answer) is split in halves
  and tried again, half by half (as the worker bisects a failing batch), so only the
  submissions whose rows the database refuses fail, with the database's error; the
  others still share one produce. A message Kafka did not acknowledge fails only the
  submission that owns it, and all of it: every one of its rows is marked failed and its
  key released before `commit` raises the producer's error (`GroupStore.unqueued`), so
  a message that landed unacknowledged is skipped and none of its jobs runs. Where that
  cannot be done (one of its jobs already ran from such a message, or the database did
  not take the write) its jobs stay queued for the sweep to produce, and `commit`
  returns as for an acknowledged submission: every answer is the truth about whether
  the jobs run. An outage of the database during the insert fails every submission of
  the group with it.
- A caller that stops waiting (its request was cancelled) changes nothing for the
  others: its group goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from api.plumbing.idempotency import Binding, KeyTakenError
from inferfleet.clients.broker import Record

log = logging.getLogger(__name__)

T = TypeVar("T")
# Per record, None once Kafka acknowledged it, or why it did not.
Produce = Callable[[Sequence[Record]], Awaitable[list[BaseException | None]]]


@dataclass(frozen=True)
class Submission:
    """One request's new jobs: their rows, their messages (one per row, in row order)
    and the idempotency key to bind to the first job, if any."""

    rows: list[dict[str, Any]]
    records: list[Record]
    binding: Binding | None = None

    @property
    def ids(self) -> list[str]:
        return [row["id"] for row in self.rows]


class GroupStore(Protocol):
    """The database side of a group."""

    async def insert(self, group: Sequence[Submission]) -> set[int]:
        """In one transaction, bind every submission's key and insert the rows of those
        whose key was bound (or who have none); the indexes of the others."""

    async def produced(self, ids: Sequence[str]) -> None:
        """Record that Kafka acknowledged the messages of the jobs `ids`."""

    async def unqueued(self, failed: Sequence[Submission], message: str) -> set[int]:
        """In one transaction, mark every job of each submission of `failed` as failed
        (its messages did not all land) and release its key, unless one of its jobs
        has already ended; the indexes of those left as they were."""


@dataclass
class _Waiting:
    submission: Submission
    answer: asyncio.Future[None]

    @property
    def jobs(self) -> int:
        return len(self.submission.rows)

    def succeed(self) -> None:
        if not self.answer.done():
            self.answer.set_result(None)

    def fail(self, error: BaseException) -> None:
        if not self.answer.done():
            self.answer.set_exception(error)


@dataclass
class _Pending:
    waiting: list[_Waiting] = field(default_factory=list)
    jobs: int = 0
    timer: asyncio.TimerHandle | None = None


class GroupCommitter:
    """Coalesces concurrent submissions into groups (module docstring); one per event loop."""

    def __init__(
        self,
        store: GroupStore,
        produce: Produce,
        *,
        window_s: float,
        max_jobs: int,
        outages: tuple[type[BaseException], ...],
    ) -> None:
        self._store = store
        self._produce = produce
        self._window_s = window_s
        self._max_jobs = max_jobs
        self._outages = outages
        self._pending = _Pending()
        self._groups: set[asyncio.Task[None]] = set()

    async def commit(self, submission: Submission) -> None:
        """Return once `submission`'s jobs are safe; raise what failed it alone
        (KeyTakenError, the database's error, the producer's error)."""
        loop = asyncio.get_running_loop()
        waiting = _Waiting(submission, loop.create_future())
        pending = self._pending
        pending.waiting.append(waiting)
        pending.jobs += waiting.jobs
        if pending.jobs >= self._max_jobs:
            self._cut()
        elif pending.timer is None:
            pending.timer = loop.call_later(self._window_s, self._cut)
        await waiting.answer

    async def close(self) -> None:
        """Commit what waits now and wait for every group in flight."""
        if self._pending.waiting:
            self._cut()
        while self._groups:
            await asyncio.gather(*self._groups, return_exceptions=True)

    def _cut(self) -> None:
        pending, self._pending = self._pending, _Pending()
        if pending.timer is not None:
            pending.timer.cancel()
        for group in groups_of(pending.waiting, self._max_jobs, lambda w: w.jobs):
            task = asyncio.get_running_loop().create_task(self._commit_group(group))
            self._groups.add(task)
            task.add_done_callback(self._groups.discard)

    async def _commit_group(self, group: list[_Waiting]) -> None:
        try:
            await self._run(group)
        except Exception as e:  # no caller may wait forever on a bug
            log.exception("a group of %d submission(s) failed unexpectedly", len(group))
            for waiting in group:
                waiting.fail(e)

    async def _run(self, group: list[_Waiting]) -> None:
        candidates, repeats = first_of_each_key(group)
        inserted = await self._insert(candidates)
        for waiting in repeats:
            waiting.fail(_taken(waiting))
        if inserted:
            await self._queue(inserted)

    async def _insert(self, group: list[_Waiting]) -> list[_Waiting]:
        """Insert `group`'s rows; those inserted. An insert the database refuses is
        split in halves, each tried on its own, until the refused submissions stand
        alone and fail with the database's error; an outage fails them all."""
        try:
            taken = await self._store.insert([w.submission for w in group])
        except self._outages as e:
            for waiting in group:
                waiting.fail(e)
            return []
        except Exception as e:  # noqa: BLE001 - one submission's rows; find which
            if len(group) == 1:
                group[0].fail(e)
                return []
            log.info("an insert of %d submissions was refused (%s); splitting it", len(group), e)
            middle = len(group) // 2
            return await self._insert(group[:middle]) + await self._insert(group[middle:])
        for index in taken:
            group[index].fail(_taken(group[index]))
        return [w for i, w in enumerate(group) if i not in taken]

    async def _queue(self, inserted: list[_Waiting]) -> None:
        records = [r for w in inserted for r in w.submission.records]
        try:
            results = await self._produce(records)
        except Exception as e:  # noqa: BLE001 - whatever it was, no message is known to be safe
            results = [e] * len(records)
        acked: list[_Waiting] = []
        refused: list[tuple[_Waiting, BaseException]] = []
        start = 0
        for waiting in inserted:
            end = start + len(waiting.submission.records)
            error = next((e for e in results[start:end] if e is not None), None)
            start = end
            if error is None:
                acked.append(waiting)
            else:
                refused.append((waiting, error))
        if refused:
            await self._unqueue(refused)
        if acked:
            for waiting in acked:
                waiting.succeed()
            try:
                await self._store.produced([i for w in acked for i in w.submission.ids])
            except Exception as e:  # noqa: BLE001 - the jobs are on the queue; see the docstring
                log.warning("could not record produced_at of %d submission(s): %s", len(acked), e)

    async def _unqueue(self, refused: list[tuple[_Waiting, BaseException]]) -> None:
        first_error = refused[0][1]
        try:
            ran = await self._store.unqueued([w.submission for w, _ in refused], str(first_error))
        except Exception as e:  # noqa: BLE001 - the rows stay queued: the sweep produces them
            log.warning(
                "could not mark the jobs of %d refused submission(s) failed (%s); they stay "
                "queued for the sweep, and are answered as accepted",
                len(refused),
                e,
            )
            ran = set(range(len(refused)))
        for index, (waiting, error) in enumerate(refused):
            if index in ran:
                waiting.succeed()
            else:
                waiting.fail(error)


def _taken(waiting: _Waiting) -> KeyTakenError:
    binding = waiting.submission.binding
    return KeyTakenError(binding.key if binding is not None else "")


def first_of_each_key(group: list[_Waiting]) -> tuple[list[_Waiting], list[_Waiting]]:
    """The group's submissions that may bind their key (the first with each key, and
    those without one), and the repeats of a key an earlier one of the group holds."""
    seen: set[tuple[str, str]] = set()
    first: list[_Waiting] = []
    repeats: list[_Waiting] = []
    for waiting in group:
        binding = waiting.submission.binding
        if binding is None:
            first.append(waiting)
        elif (binding.tenant, binding.key) in seen:
            repeats.append(waiting)
        else:
            seen.add((binding.tenant, binding.key))
            first.append(waiting)
    return first, repeats


def groups_of(items: Sequence[T], max_size: int, size: Callable[[T], int]) -> list[list[T]]:
    """`items` in order, cut into groups of at most `max_size` (by `size`); an item larger
    than that makes a group alone."""
    groups: list[list[T]] = []
    current: list[T] = []
    total = 0
    for item in items:
        n = size(item)
        if current and total + n > max_size:
            groups.append(current)
            current, total = [], 0
        current.append(item)
        total += n
    if current:
        groups.append(current)
    return groups
