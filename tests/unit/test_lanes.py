"""Lane polling: interactive records first, the batch lane fills the rest (no services)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from kafka import TopicPartition
from kafka.errors import KafkaTimeoutError

from worker.lanes import (
    INTERACTIVE_FETCH_WAIT_MS,
    LanePoller,
    _unpark,
    batch_room,
    behind,
    by_lane,
    fill_plan,
    lane_of,
    pause_batch_lane,
)

INTERACTIVE = "inferfleet.jobs.fraud.interactive"
BATCH = "inferfleet.jobs.fraud.batch"
I0, I1 = TopicPartition(INTERACTIVE, 0), TopicPartition(INTERACTIVE, 1)
B0, B1 = TopicPartition(BATCH, 0), TopicPartition(BATCH, 1)


@dataclass(frozen=True)
class Rec:
    topic: str
    partition: int
    offset: int


@dataclass
class FakeConsumer:
    """Records per partition, fetched in `order` (batch partitions first, as when a
    backlog was fetched before an interactive record arrived). Paused partitions are
    skipped, their records kept, like kafka-python's fetcher."""

    produced: dict[TopicPartition, int] = field(default_factory=dict)
    consumed: dict[TopicPartition, int] = field(default_factory=dict)
    order: list[TopicPartition] = field(default_factory=list)
    paused_set: set[TopicPartition] = field(default_factory=set)
    calls: list[tuple[int, int | None, frozenset[TopicPartition]]] = field(default_factory=list)
    unknown_positions: set[TopicPartition] = field(default_factory=set)
    offsets_fail: bool = False
    during_poll: Callable[[FakeConsumer], None] | None = None

    def add(self, tp: TopicPartition, count: int) -> None:
        if tp not in self.produced:
            self.order.append(tp)
            self.produced[tp] = 0
            self.consumed[tp] = 0
        self.produced[tp] += count

    def assignment(self) -> set[TopicPartition]:
        return set(self.produced)

    def pause(self, *partitions: TopicPartition) -> None:
        assert all(tp in self.produced for tp in partitions), "kafka-python raises"
        self.paused_set.update(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        assert all(tp in self.produced for tp in partitions), "kafka-python raises"
        self.paused_set.difference_update(partitions)

    def paused(self) -> set[TopicPartition]:
        return self.paused_set & set(self.produced)

    def end_offsets(self, partitions: list[Any], timeout_ms: int | None = None) -> dict[Any, int]:
        if self.offsets_fail:
            raise KafkaTimeoutError("no answer")
        return {tp: self.produced[tp] for tp in partitions}

    def position(self, partition: Any, timeout_ms: int | None = None) -> int | None:
        return None if partition in self.unknown_positions else self.consumed[partition]

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[Any, list[Rec]]:
        self.calls.append((timeout_ms, max_records, frozenset(self.paused_set)))
        if self.during_poll is not None:
            hook, self.during_poll = self.during_poll, None
            hook(self)
        room = max_records if max_records is not None else 500
        out: dict[Any, list[Rec]] = {}
        for tp in self.order:
            if tp in self.paused_set or tp not in self.produced:
                continue
            while self.consumed[tp] < self.produced[tp] and room > 0:
                out.setdefault(tp, []).append(Rec(tp.topic, tp.partition, self.consumed[tp]))
                self.consumed[tp] += 1
                room -= 1
        return out


def backlog(batch: int, interactive: int) -> FakeConsumer:
    consumer = FakeConsumer()
    for tp in (B0, B1):
        consumer.add(tp, batch)
    for tp in (I0, I1):
        consumer.add(tp, interactive)
    return consumer


def lanes(records: list[Rec]) -> list[str]:
    return [lane_of(r.topic) for r in records]


def poller(consumer: FakeConsumer, max_records: int = 100, waiting: bool = True) -> LanePoller:
    """A poller whose last poll left records waiting (the busy case), unless `waiting`."""
    p = LanePoller(consumer, max_records, timeout_ms=500)
    p.records_waiting = waiting
    return p


@pytest.mark.parametrize(
    ("topic", "lane"),
    [
        ("inferfleet.jobs.fraud.batch", "batch"),
        ("inferfleet.jobs.fraud.interactive", "interactive"),
        ("inferfleet.jobs.batch.interactive", "interactive"),
        ("inferfleet.jobs.batchy.batch", "batch"),
        ("some.other.topic", "interactive"),
    ],
)
def test_lane_of_reads_the_topic_suffix(topic: str, lane: str) -> None:
    assert lane_of(topic) == lane


def test_by_lane_sorts_and_leaves_out_empty_lanes() -> None:
    assert by_lane({B1, I0, B0}) == {"interactive": [I0], "batch": [B0, B1]}
    assert by_lane({I1}) == {"interactive": [I1]}
    assert by_lane(set()) == {}


@pytest.mark.parametrize(
    ("ends", "positions", "lagging"),
    [
        ({I0: 5, I1: 7}, {I0: 5, I1: 7}, False),  # read to the end
        ({I0: 5, I1: 8}, {I0: 5, I1: 7}, True),
        ({I0: 0}, {I0: 0}, False),  # empty partition
        ({I0: 0}, {I0: None}, True),  # position not known yet
        ({}, {}, False),
    ],
)
def test_behind(
    ends: dict[TopicPartition, int], positions: dict[TopicPartition, int | None], lagging: bool
) -> None:
    assert behind(ends, positions) is lagging


@pytest.mark.parametrize(
    ("taken", "max_records", "timeout_ms", "plan"),
    [
        (0, 2000, 500, (2000, 500)),  # nothing interactive: wait for either lane
        (5, 2000, 500, (1995, 0)),  # interactive in hand: fill from what is fetched only
        (1999, 2000, 500, (1, 0)),
        (2000, 2000, 500, None),  # full of interactive records: no second poll
    ],
)
def test_fill_plan(
    taken: int, max_records: int, timeout_ms: int, plan: tuple[int, int] | None
) -> None:
    assert fill_plan(taken, max_records, timeout_ms) == plan


@pytest.mark.parametrize(
    ("lanes_assigned", "waiting", "pause"),
    [
        ({"interactive": [I0], "batch": [B0]}, True, True),
        ({"interactive": [I0], "batch": [B0]}, False, False),  # nothing fetched: fetch it
        ({"batch": [B0]}, True, False),
        ({"interactive": [I0]}, True, False),
    ],
)
def test_pause_batch_lane(lanes_assigned: dict[Any, Any], waiting: bool, pause: bool) -> None:
    assert pause_batch_lane(lanes_assigned, waiting) is pause


def test_interactive_records_come_first_and_the_batch_lane_fills_the_rest() -> None:
    consumer = backlog(batch=5000, interactive=3)
    records = poller(consumer).poll()

    assert lanes(records) == ["interactive"] * 6 + ["batch"] * 94
    first, second = consumer.calls
    # The lane is known to lag, so the poll of it alone may wait for its fetch; the
    # fill takes only what is fetched.
    assert first == (INTERACTIVE_FETCH_WAIT_MS, 100, frozenset({B0, B1}))
    assert second == (0, 94, frozenset())
    assert consumer.paused() == set()


def test_without_interactive_lag_it_is_one_plain_poll() -> None:
    consumer = backlog(batch=10, interactive=0)
    p = poller(consumer)
    records = p.poll()

    assert lanes(records) == ["batch"] * 20
    assert consumer.calls == [(500, 100, frozenset())]
    assert not p.records_waiting, "it took fewer than it could: nothing more was fetched"


def test_an_interactive_record_behind_a_fetched_backlog_waits_one_poll_at_most() -> None:
    consumer = backlog(batch=5000, interactive=1)
    p = poller(consumer, waiting=False)  # as after an idle spell

    first = p.poll()  # nothing was known to wait: a plain poll, backlog first
    assert lanes(first) == ["batch"] * 100
    assert p.records_waiting
    second = p.poll()
    assert lanes(second[:2]) == ["interactive"] * 2


def test_a_dry_batch_lane_is_not_paused_so_it_gets_fetched() -> None:
    consumer = backlog(batch=0, interactive=1)
    p = poller(consumer, waiting=False)
    assert lanes(p.poll()) == ["interactive"] * 2
    assert all(paused == frozenset() for _, _, paused in consumer.calls)


def test_a_full_batch_of_interactive_records_skips_the_batch_lane() -> None:
    consumer = backlog(batch=50, interactive=60)
    p = poller(consumer)
    records = p.poll()

    assert lanes(records) == ["interactive"] * 100
    assert len(consumer.calls) == 1
    assert consumer.paused() == set()
    assert p.records_waiting, "unchanged: the batch lane was not read"


def test_batch_records_wait_but_none_is_lost_or_repeated() -> None:
    consumer = backlog(batch=30, interactive=0)
    p = poller(consumer, max_records=12)
    seen: list[Rec] = []
    for _ in range(3):
        consumer.add(I0, 2)  # two interactive records arrive per poll
        got = p.poll()
        assert lanes(got[:2]) == ["interactive"] * 2
        seen.extend(got)
    while got := p.poll():
        seen.extend(got)
    batch = sorted((r.partition, r.offset) for r in seen if r.topic == BATCH)
    assert batch == [(p, o) for p in range(2) for o in range(30)]
    assert len(seen) == 66


def test_unknown_positions_count_as_lag() -> None:
    consumer = backlog(batch=10, interactive=0)
    consumer.unknown_positions = {I0}
    poller(consumer).poll()
    assert consumer.calls[0][2] == frozenset({B0, B1})


def test_end_offsets_that_do_not_answer_mean_a_plain_poll() -> None:
    consumer = backlog(batch=10, interactive=1)
    consumer.offsets_fail = True
    assert len(poller(consumer).poll()) == 22
    assert consumer.calls == [(500, 100, frozenset())]


def test_one_lane_alone_is_one_plain_poll() -> None:
    consumer = FakeConsumer()
    consumer.add(I0, 5)
    assert len(poller(consumer).poll()) == 5
    assert consumer.calls == [(500, 100, frozenset())]


def test_a_rebalance_during_the_first_poll_leaves_nothing_paused() -> None:
    consumer = backlog(batch=10, interactive=1)

    def rebalance(c: FakeConsumer) -> None:
        # B1 moves to another member (kafka-python drops its state, paused flag
        # included); B7 arrives, unpaused like every new assignment.
        del c.produced[B1]
        c.paused_set.discard(B1)
        c.add(TopicPartition(BATCH, 7), 3)

    consumer.during_poll = rebalance
    records = poller(consumer).poll()
    assert consumer.paused() == set()
    assert consumer.calls[1][2] == frozenset(), "the fill poll reads every lane"
    assert {(r.topic, r.partition) for r in records} == {
        (INTERACTIVE, 0),
        (INTERACTIVE, 1),
        (BATCH, 0),
        (BATCH, 7),
    }


def test_a_failing_first_poll_still_resumes_the_batch_lane() -> None:
    consumer = backlog(batch=10, interactive=1)

    def fail(_: FakeConsumer) -> None:
        raise KafkaTimeoutError("broker gone")

    consumer.during_poll = fail
    with pytest.raises(KafkaTimeoutError):
        poller(consumer).poll()
    assert consumer.paused() == set()


@dataclass
class Slot:
    """A drained or unread stand-in for kafka-python's PartitionRecords."""

    left: int

    def __bool__(self) -> bool:
        return self.left > 0


@dataclass
class Fetcher:
    _next_partition_records: Slot | None
    _paused_partition_records: dict[Any, Slot]


@dataclass
class WithFetcher:
    _fetcher: Fetcher


@pytest.mark.parametrize(
    ("slot", "parked", "cleared"),
    [
        (Slot(0), {B0: Slot(5)}, True),  # drained slot, records parked: clear it
        (Slot(3), {B0: Slot(5)}, False),  # the slot still has records: leave it
        (Slot(0), {}, False),  # nothing parked: nothing to do
        (None, {B0: Slot(5)}, False),  # already empty
    ],
)
def test_unpark_clears_only_a_drained_slot_while_records_are_parked(
    slot: Slot | None, parked: dict[Any, Slot], cleared: bool
) -> None:
    consumer = WithFetcher(Fetcher(slot, parked))
    _unpark(consumer)
    assert (consumer._fetcher._next_partition_records is None) is (cleared or slot is None)


def test_unpark_leaves_other_consumers_alone() -> None:
    _unpark(object())  # a consumer without kafka-python's internals


@pytest.mark.parametrize(
    ("max_records", "share", "active", "room"),
    [
        (2000, 250, False, 2000),  # no interactive traffic: full units
        (2000, 250, True, 250),  # interactive lane active: a small batch share
        (100, 250, True, 100),  # a share above the poll size changes nothing
        (2000, 0, True, 1),  # the batch lane always moves
    ],
)
def test_batch_room(max_records: int, share: int, active: bool, room: int) -> None:
    assert batch_room(max_records, share, active) == room


@pytest.mark.parametrize(
    ("taken", "room", "plan"),
    [
        (0, 250, (250, 500)),
        (3, 250, (250, 0)),
        (1990, 250, (10, 0)),  # the poll's own bound still holds
        (3, None, (1997, 0)),
    ],
)
def test_fill_plan_with_a_batch_room(taken: int, room: int | None, plan: tuple[int, int]) -> None:
    assert fill_plan(taken, 2000, 500, room) == plan


def test_while_interactive_records_wait_the_batch_share_is_small() -> None:
    consumer = backlog(batch=5000, interactive=3)
    p = LanePoller(consumer, 100, timeout_ms=500, batch_share=10)
    p.records_waiting = True

    records = p.poll()

    assert lanes(records) == ["interactive"] * 6 + ["batch"] * 10


def test_the_share_stays_small_while_the_lane_was_active_lately() -> None:
    consumer = backlog(batch=5000, interactive=1)
    p = LanePoller(consumer, 100, timeout_ms=500, batch_share=10, recent_s=3600)
    p.records_waiting = True
    p.poll()  # takes the interactive records: the lane is active

    assert lanes(p.poll()) == ["batch"] * 10, "an hour counts as lately here"


def test_without_interactive_traffic_the_share_does_not_apply() -> None:
    consumer = backlog(batch=5000, interactive=0)
    p = LanePoller(consumer, 100, timeout_ms=500, batch_share=10)

    assert lanes(p.poll()) == ["batch"] * 100


def test_poll_interactive_takes_interactive_records_only() -> None:
    consumer = backlog(batch=5000, interactive=2)
    p = poller(consumer, waiting=False)

    records = p.poll_interactive(20)

    assert lanes(records) == ["interactive"] * 4
    assert consumer.paused() == set(), "the batch lane is resumed"
    assert consumer.calls == [(20, 100, frozenset({B0, B1}))], "one poll, the batch lane paused"
    assert p.poll_interactive(20) == [], "nothing more: an empty wait, no batch record"
    assert consumer.calls[1] == (20, 100, frozenset({B0, B1}))


def test_poll_interactive_without_an_interactive_lane_waits_handing_out_nothing() -> None:
    consumer = FakeConsumer()
    consumer.add(B0, 10)
    p = poller(consumer, waiting=False)

    assert p.poll_interactive(20) == []
    # A poll that waits (not a return at once, which would spin the consumer side).
    assert consumer.calls == [(20, 100, frozenset({B0}))]
    assert consumer.paused() == set()
