"""Priority lanes: a worker serves interactive records before batch records.

Each model has two topics, `….interactive` and `….batch` (`inferfleet.clients.topics`), and a
worker's one consumer reads both. kafka-python hands out buffered records in the order
their fetches came in, so an interactive record arriving behind a fetched batch backlog
would otherwise wait for all of it.

`LanePoller.poll` first asks the broker whether an interactive partition has records
the worker has not read (its end offset is past the consumer's position). If so, and
if fetched records are waiting in the consumer, it polls with every batch-lane
partition paused, which returns interactive records alone. That poll waits up to
`INTERACTIVE_FETCH_WAIT_MS` for them: kafka-python sends a fetch only once what it
buffered is handed out, so they are seldom fetched yet, and a poll that did not wait
would leave them to the next call. Batch records already fetched stay parked in the
consumer, neither dropped nor skipped (`_unpark` works around kafka-python 3.0 never
handing some of them back). The second poll, with everything resumed, fills the rest
of the batch. So an interactive record waits for the batch in flight and at most one
more, never for the backlog. Otherwise it is one plain poll, as before lanes. Asking
costs one ListOffsets request per poll; the fetched high watermarks cannot answer,
because kafka-python reads them only as it hands out each partition's fetched records,
in order.

While the worker has no room for batch records (the pipeline's batch queue is full),
`LanePoller.poll_interactive` polls with the batch lane paused and asks nothing first:
kafka-python then fetches the interactive partitions alone, and the broker answers
that fetch as soon as one of them has a record (or after the consumer's 50 ms
`fetch_max_wait_ms`), so a record is handed out as it arrives. Asking first, a
ListOffsets round trip that took 30-150 ms beside a batch, was most of an interactive
record's wait there.

Offsets are untouched: a poll advances positions only for the records it returns, and
the worker commits after their results are written. Nothing stays paused between
calls (what is paused is resumed in a `finally`), so a rebalance inside a poll cannot
leave a partition paused and its lane stalled; partitions a rebalance hands over
arrive unpaused anyway.

Why not one consumer per lane: the interactive one would have to be polled without
waiting whenever the batch lane has work, and kafka-python 3.0 cannot finish a group
join in polls that do not wait (a join that completes between two polls is thrown
away and sent again), so every rebalance under load would churn.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from kafka.errors import KafkaError

from inferfleet.clients import topics
from inferfleet.clients.topics import Lane

log = logging.getLogger(__name__)

# The interactive lane counts as active this long after its last record was polled
# (here), or its last unit was handed off beside a batch (`worker.priority`).
INTERACTIVE_RECENT_S = 1.0
# How long `LanePoller.poll`'s poll of the interactive lane alone may wait for its
# fetch, once the broker has said the lane has unread records.
INTERACTIVE_FETCH_WAIT_MS = 50


class LaneConsumer(Protocol):
    """The part of `kafka.KafkaConsumer` that lane polling uses."""

    def assignment(self) -> set[Any]: ...

    def pause(self, *partitions: Any) -> None: ...

    def resume(self, *partitions: Any) -> None: ...

    def paused(self) -> set[Any]: ...

    def end_offsets(
        self, partitions: list[Any], timeout_ms: int | None = ...
    ) -> dict[Any, int]: ...

    def position(self, partition: Any, timeout_ms: int | None = ...) -> int | None: ...

    def poll(self, timeout_ms: int = ..., max_records: int | None = ...) -> Mapping[Any, Any]: ...


def lane_of(topic: str) -> Lane:
    """The lane the worker serves a topic in: the lane it carries
    (`inferfleet.clients.topics.lane_of`); topics named otherwise count as interactive."""
    return "batch" if topics.lane_of(topic) == "batch" else "interactive"


def by_lane(partitions: Iterable[Any]) -> dict[Lane, list[Any]]:
    """TopicPartitions by lane, each list sorted; lanes without partitions are left out."""
    found: dict[Lane, list[Any]] = {}
    for tp in sorted(partitions):
        found.setdefault(lane_of(tp.topic), []).append(tp)
    return found


def behind(ends: Mapping[Any, int], positions: Mapping[Any, int | None]) -> bool:
    """Whether any partition has records past the consumer's position. A partition
    whose position is not known yet counts as behind: its first records may be there."""
    return any(positions.get(tp) is None or end > (positions[tp] or 0) for tp, end in ends.items())


def batch_room(max_records: int, share: int, interactive_active: bool) -> int:
    """How many records the next unit may take once its interactive records are in.

    While the interactive lane is active (records waiting now, or seen lately), a unit
    takes at most `share` batch-lane records, so an interactive record that arrives
    next waits behind a small unit, not a full poll; otherwise the unit is full size.
    """
    if not interactive_active:
        return max_records
    return max(1, min(share, max_records))


def fill_plan(
    taken: int, max_records: int, timeout_ms: int, batch_room: int | None = None
) -> tuple[int, int] | None:
    """(max records, timeout) of the poll that fills the batch after `taken`
    interactive records, or None when the batch is full.

    With records in hand it takes only what is already fetched (timeout 0), so the
    interactive records never wait for batch records to arrive. `batch_room` caps the
    fill (`batch_room`: small while the interactive lane is active).
    """
    room = max_records - taken
    if batch_room is not None:
        room = min(room, batch_room)
    if room <= 0:
        return None
    return room, 0 if taken else timeout_ms


class LanePoller:
    """Polls one consumer, interactive records first (module docstring).

    It remembers whether its last poll left records waiting in the consumer (it took
    as many as it could). Only then are the batch partitions paused for the first
    poll: a poll made with them paused sends the next fetch without them, so pausing
    a batch lane that has nothing fetched would keep its data from ever being fetched
    while interactive records keep coming.
    """

    def __init__(
        self,
        consumer: LaneConsumer,
        max_records: int,
        timeout_ms: int,
        offsets_timeout_ms: int = 1000,
        batch_share: int | None = None,
        recent_s: float = INTERACTIVE_RECENT_S,
    ) -> None:
        self._consumer = consumer
        self._max_records = max_records
        self._timeout_ms = timeout_ms
        self._offsets_timeout_ms = offsets_timeout_ms
        # Batch-lane records a poll takes while the interactive lane is active (None:
        # as many as fit), and for how long after its last record the lane counts so.
        self._batch_share = batch_share
        self._recent_s = recent_s
        self._interactive_at = -math.inf
        self.records_waiting = False

    def poll(self) -> list[Any]:
        """Up to `max_records` records, every fetched interactive record first; while
        the interactive lane is active, at most `batch_share` records after those."""
        consumer = self._consumer
        lanes = by_lane(consumer.assignment())
        first: list[Any] = []
        if pause_batch_lane(lanes, self.records_waiting) and _lagging(
            consumer, lanes["interactive"], self._offsets_timeout_ms
        ):
            first = self._interactive_only(lanes, INTERACTIVE_FETCH_WAIT_MS)
        room = None
        if self._batch_share is not None:
            active = bool(first) or time.monotonic() - self._interactive_at < self._recent_s
            room = batch_room(self._max_records, self._batch_share, active)
        plan = fill_plan(len(first), self._max_records, self._timeout_ms, room)
        if plan is None:
            return self._seen(first)
        room, wait = plan
        rest = _take(consumer, room, wait)
        self.records_waiting = len(rest) >= room
        return self._seen(first + rest)

    def poll_interactive(self, timeout_ms: int) -> list[Any]:
        """Interactive records alone, waiting up to `timeout_ms` for them; batch-lane
        records stay where they are, for the next `poll`.

        Made while the worker has no room for batch records: the poll sends a fetch of
        the interactive partitions alone, which the broker answers as soon as one of
        them has a record, so a record is handed out as it arrives, with no offsets
        asked for first. With no interactive partition assigned it only waits, the
        group kept up to date meanwhile.
        """
        lanes = by_lane(self._consumer.assignment())
        return self._seen(self._interactive_only(lanes, timeout_ms))

    def _interactive_only(self, lanes: Mapping[Lane, list[Any]], timeout_ms: int) -> list[Any]:
        consumer = self._consumer
        consumer.pause(*lanes.get("batch", []))
        try:
            return _take(consumer, self._max_records, timeout_ms)
        finally:
            # What is paused now: a rebalance in the poll may have changed the assignment.
            consumer.resume(*consumer.paused())

    def _seen(self, records: list[Any]) -> list[Any]:
        if any(lane_of(r.topic) == "interactive" for r in records):
            self._interactive_at = time.monotonic()
        return records


def pause_batch_lane(lanes: Mapping[Lane, Any], records_waiting: bool) -> bool:
    """Whether the first poll should pause the batch lane (if the interactive lane lags):
    only with both lanes assigned, and only while fetched records wait in the consumer."""
    return records_waiting and "batch" in lanes and "interactive" in lanes


def _lagging(consumer: LaneConsumer, partitions: list[Any], timeout_ms: int) -> bool:
    """Whether the interactive lane has unread records; False when Kafka cannot say
    (the poll that follows meets the outage, if there is one)."""
    try:
        ends = consumer.end_offsets(partitions, timeout_ms=timeout_ms)
        positions = {tp: consumer.position(tp, timeout_ms=0) for tp in partitions}
    except KafkaError as e:
        log.debug("cannot read the interactive lane's offsets: %s", e)
        return False
    return behind(ends, positions)


def _take(consumer: LaneConsumer, max_records: int, timeout_ms: int) -> list[Any]:
    _unpark(consumer)
    polled = consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
    return [record for records in polled.values() for record in records]


def _unpark(consumer: Any) -> None:
    """Work around kafka-python 3.0's keeping of records fetched for paused partitions.

    Its fetcher parks them while the partition is paused and hands them back only when
    its slot for the partition being read is empty (None). A slot read to the end is
    left in place instead, so parked records would never come back, and the partition
    is not fetched while they wait: its lane would stall for good. Clearing a slot that
    holds nothing more lets the next poll hand the parked records back. Without these
    internals (another kafka-python) this does nothing.
    """
    fetcher = getattr(consumer, "_fetcher", None)
    if (
        fetcher is not None
        and getattr(fetcher, "_paused_partition_records", None)
        and getattr(fetcher, "_next_partition_records", None) is not None
        and not fetcher._next_partition_records
    ):
        fetcher._next_partition_records = None
