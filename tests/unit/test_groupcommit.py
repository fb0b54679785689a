"""api.plumbing.groupcommit: how submissions are grouped, and that each fails alone,
with a fake database and a fake Kafka."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest
from sqlalchemy.exc import DataError, OperationalError

from api.plumbing.groupcommit import GroupCommitter, Submission, groups_of
from api.plumbing.idempotency import Binding, KeyTakenError
from inferfleet.clients.broker import Record
from inferfleet.errors import QueueUnavailableError

numbers = itertools.count()


def submission(jobs: int = 1, key: str | None = None, *, bad: bool = False) -> Submission:
    """`jobs` new jobs; `bad` ones hold a value the fake database refuses."""
    ids = [f"job_{next(numbers)}" for _ in range(jobs)]
    rows = [{"id": i, "inputs": {"bad": bad}} for i in ids]
    records = [Record("inferfleet.jobs.m.interactive", i.encode(), b"{}") for i in ids]
    return Submission(rows, records, Binding("t", key, "digest") if key else None)


class FakeStore:
    """The database: keys it holds, the rows it took, and every call it got."""

    def __init__(self, held: Sequence[str] = ()) -> None:
        self.keys = {("t", k) for k in held}
        self.rows: list[str] = []
        self.inserts: list[list[list[str]]] = []
        self.produced_ids: list[list[str]] = []
        self.unqueued_ids: list[list[str]] = []
        self.down = False
        self.ended: set[str] = set()  # jobs that ran from a message that landed unacknowledged
        self.unqueue_down = False

    async def insert(self, group: Sequence[Submission]) -> set[int]:
        self.inserts.append([s.ids for s in group])
        if self.down:
            raise OperationalError("INSERT", {}, ConnectionError("no database"))
        if any(row["inputs"]["bad"] for s in group for row in s.rows):
            raise DataError("INSERT", {}, ValueError("unsupported Unicode escape sequence"))
        taken = set()
        for index, s in enumerate(group):
            if s.binding is not None:
                held = (s.binding.tenant, s.binding.key)
                if held in self.keys:
                    taken.add(index)
                    continue
                self.keys.add(held)
            self.rows += s.ids
        return taken

    async def produced(self, ids: Sequence[str]) -> None:
        self.produced_ids.append(list(ids))

    async def unqueued(self, failed: Sequence[Submission], message: str) -> set[int]:
        if self.unqueue_down:
            raise OperationalError("UPDATE", {}, ConnectionError("no database"))
        self.unqueued_ids.append([i for s in failed for i in s.ids])
        return {n for n, s in enumerate(failed) if self.ended & set(s.ids)}


class FakeKafka:
    """Acknowledges every record but those whose key it was told to refuse."""

    def __init__(self, refuse: Sequence[str] = ()) -> None:
        self.refuse = {k.encode() for k in refuse}
        self.calls: list[list[str]] = []

    async def __call__(self, records: Sequence[Record]) -> list[BaseException | None]:
        self.calls.append([r.key.decode() for r in records])
        return [
            QueueUnavailableError("not acknowledged") if r.key in self.refuse else None
            for r in records
        ]


def committer(
    store: FakeStore, kafka: FakeKafka, window_s: float = 0.0, max_jobs: int = 500
) -> GroupCommitter:
    return GroupCommitter(
        store, kafka, window_s=window_s, max_jobs=max_jobs, outages=(OperationalError,)
    )


def run(commit: Callable[[], Awaitable[Any]]) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(commit(), 10)

    return asyncio.run(bounded())


async def together(group: GroupCommitter, subs: Sequence[Submission]) -> list[Any]:
    """Commit `subs` concurrently; each one's exception, or None."""
    return await asyncio.gather(*(group.commit(s) for s in subs), return_exceptions=True)


def test_concurrent_submissions_share_one_insert_one_produce_and_one_update() -> None:
    store, kafka = FakeStore(), FakeKafka()
    subs = [submission(jobs=n) for n in (1, 3, 1, 2)]
    every_id = [i for s in subs for i in s.ids]

    async def one_by_one() -> list[Any]:
        # Arriving at different turns of the loop, within one window: the fourth fills it.
        group = committer(store, kafka, window_s=3600, max_jobs=len(every_id))
        waiting = []
        for s in subs:
            waiting.append(asyncio.ensure_future(group.commit(s)))
            await asyncio.sleep(0)
        return await asyncio.gather(*waiting)

    answers = run(one_by_one)

    assert answers == [None] * 4
    assert store.inserts == [[s.ids for s in subs]]
    assert kafka.calls == [every_id]
    assert store.produced_ids == [every_id]
    assert store.unqueued_ids == []


def test_the_answer_does_not_wait_for_the_produced_at_update() -> None:
    class SlowUpdate(FakeStore):
        def __init__(self) -> None:
            super().__init__()
            self.release = asyncio.Event()

        async def produced(self, ids: Sequence[str]) -> None:
            await self.release.wait()
            await super().produced(ids)

    store, kafka = SlowUpdate(), FakeKafka()
    sub = submission(jobs=2)

    async def commit_then_close() -> list[list[str]]:
        group = committer(store, kafka)
        await group.commit(sub)  # answered while the update still waits
        assert store.produced_ids == []
        closing = asyncio.ensure_future(group.close())
        await asyncio.sleep(0.01)
        assert not closing.done(), "close returned before the update was made"
        store.release.set()
        await closing
        return store.produced_ids

    assert run(commit_then_close) == [sub.ids]


def test_a_submission_the_database_refuses_fails_alone() -> None:
    store, kafka = FakeStore(), FakeKafka()
    subs = [submission(), submission(jobs=2), submission(bad=True), submission()]

    answers = run(lambda: together(committer(store, kafka), subs))

    assert [type(a) for a in answers] == [type(None), type(None), DataError, type(None)]
    good = [i for n in (0, 1, 3) for i in subs[n].ids]
    assert store.rows == good
    assert kafka.calls == [good]  # the others still share one produce
    assert store.produced_ids == [good]


def test_every_refused_submission_fails_and_the_rest_share_one_produce() -> None:
    store, kafka = FakeStore(), FakeKafka()
    subs = [submission(bad=n in (1, 6)) for n in range(9)]

    answers = run(lambda: together(committer(store, kafka), subs))

    assert [n for n, a in enumerate(answers) if isinstance(a, DataError)] == [1, 6]
    good = [i for n, s in enumerate(subs) if n not in (1, 6) for i in s.ids]
    assert [a for n, a in enumerate(answers) if n not in (1, 6)] == [None] * 7
    assert kafka.calls == [good]


def test_an_outage_fails_the_whole_group_without_trying_each_alone() -> None:
    store, kafka = FakeStore(), FakeKafka()
    store.down = True
    subs = [submission() for _ in range(3)]

    answers = run(lambda: together(committer(store, kafka), subs))

    assert all(isinstance(a, OperationalError) for a in answers)
    assert len(store.inserts) == 1
    assert kafka.calls == []


def test_a_record_kafka_did_not_acknowledge_fails_only_the_submission_that_owns_it() -> None:
    bulk = submission(jobs=3)
    before, after = submission(), submission()
    store, kafka = FakeStore(), FakeKafka(refuse=[bulk.ids[1]])

    answers = run(lambda: together(committer(store, kafka), [before, bulk, after]))

    assert answers[0] is None
    assert isinstance(answers[1], QueueUnavailableError)
    assert answers[2] is None
    assert store.unqueued_ids == [bulk.ids]  # every job of it, the acknowledged ones too
    assert store.produced_ids == [before.ids + after.ids]


def test_a_refused_submission_one_of_whose_jobs_already_ran_is_answered_as_accepted() -> None:
    """Its message landed without its acknowledgement and a worker ran it: the
    submission cannot be made not to run, so its answer says it runs."""
    bulk, other = submission(jobs=3), submission()
    store, kafka = FakeStore(), FakeKafka(refuse=[*bulk.ids, other.ids[0]])
    store.ended = {bulk.ids[0]}

    answers = run(lambda: together(committer(store, kafka), [bulk, other]))

    assert answers[0] is None
    assert isinstance(answers[1], QueueUnavailableError)
    assert store.unqueued_ids == [bulk.ids + other.ids]
    assert store.produced_ids == []  # the sweep produces what is left of it


def test_a_refusal_the_database_does_not_take_is_answered_as_accepted() -> None:
    """The rows stay queued without `produced_at`, so the sweep produces them: they run,
    and a 503 would have been a lie."""
    refused = submission(jobs=2)
    store, kafka = FakeStore(), FakeKafka(refuse=[refused.ids[1]])
    store.unqueue_down = True

    answers = run(lambda: together(committer(store, kafka), [refused]))

    assert answers == [None]
    assert store.produced_ids == []


def test_a_key_another_submit_holds_fails_its_submission_and_inserts_nothing_of_it() -> None:
    store, kafka = FakeStore(held=["order-17"]), FakeKafka()
    keyed, other = submission(key="order-17"), submission()

    answers = run(lambda: together(committer(store, kafka), [keyed, other]))

    assert isinstance(answers[0], KeyTakenError)
    assert answers[1] is None
    assert store.rows == other.ids
    assert kafka.calls == [other.ids]


def test_repeats_of_one_key_in_a_group_leave_one_submission_to_bind_it() -> None:
    store, kafka = FakeStore(), FakeKafka()
    subs = [submission(key="burst") for _ in range(4)]

    answers = run(lambda: together(committer(store, kafka), subs))

    assert answers[0] is None
    assert all(isinstance(a, KeyTakenError) for a in answers[1:])
    assert store.inserts == [[subs[0].ids]]
    assert store.rows == subs[0].ids


def test_a_full_group_is_cut_without_waiting_for_the_window() -> None:
    store, kafka = FakeStore(), FakeKafka()
    subs = [submission() for _ in range(4)]

    answers = run(lambda: together(committer(store, kafka, window_s=3600, max_jobs=2), subs))

    assert answers == [None] * 4
    assert store.inserts == [[subs[0].ids, subs[1].ids], [subs[2].ids, subs[3].ids]]


def test_the_size_bound_cuts_groups_and_the_window_takes_the_rest() -> None:
    store, kafka = FakeStore(), FakeKafka()
    subs = [submission() for _ in range(7)]

    run(lambda: together(committer(store, kafka, max_jobs=3), subs))

    assert [len(group) for group in store.inserts] == [3, 3, 1]


def test_a_submission_larger_than_a_group_goes_alone() -> None:
    store, kafka = FakeStore(), FakeKafka()
    small, large, last = submission(), submission(jobs=5), submission()

    run(lambda: together(committer(store, kafka, max_jobs=3), [small, large, last]))

    assert store.inserts == [[small.ids], [large.ids], [last.ids]]


def test_a_window_of_0_groups_only_what_already_waits() -> None:
    store, kafka = FakeStore(), FakeKafka()
    first, second, third = submission(), submission(), submission()

    async def one_then_two() -> None:
        group = committer(store, kafka)
        await group.commit(first)
        await together(group, [second, third])

    run(one_then_two)

    assert store.inserts == [[first.ids], [second.ids, third.ids]]


def test_a_caller_that_stops_waiting_leaves_its_group_going() -> None:
    store, kafka = FakeStore(), FakeKafka()
    gone, staying = submission(), submission()

    async def cancel_one() -> None:
        group = committer(store, kafka, window_s=3600, max_jobs=2)
        leaving = asyncio.ensure_future(group.commit(gone))
        await asyncio.sleep(0)
        leaving.cancel()
        await group.commit(staying)
        await group.close()

    run(cancel_one)

    assert store.produced_ids == [gone.ids + staying.ids]


def test_close_commits_what_waits() -> None:
    store, kafka = FakeStore(), FakeKafka()
    waiting = submission()

    async def close_early() -> None:
        group = committer(store, kafka, window_s=3600)
        pending = asyncio.ensure_future(group.commit(waiting))
        await asyncio.sleep(0)
        await group.close()
        await pending

    run(close_early)

    assert store.produced_ids == [waiting.ids]


@pytest.mark.parametrize(
    ("sizes", "expected"),
    [
        ([], []),
        ([1, 1, 1], [[1, 1, 1]]),
        ([2, 2, 2], [[2, 2], [2]]),
        ([1, 9, 1], [[1], [9], [1]]),
        ([4, 1], [[4], [1]]),
    ],
)
def test_groups_keep_order_and_bound_their_size(
    sizes: list[int], expected: list[list[int]]
) -> None:
    assert groups_of(sizes, 4, lambda n: n) == expected
