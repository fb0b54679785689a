"""Kafka I/O of the worker: poll a batch (interactive lane first), commit it, send
records, leave the group.

The KafkaConsumer is not thread-safe: in the pipelined worker only its consumer side
calls `poll`, `poll_interactive`, `commit`, `commit_offsets`, `rewind` and `close`
(`worker.pipeline`). `send` uses the producer alone, which is thread-safe, and is what
the execution side calls.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import CommitFailedError, KafkaError, RebalanceInProgressError
from kafka.structs import OffsetAndMetadata

from inferfleet.clients.broker import Record, make_consumer, make_producer, send_all
from inferfleet.errors import QueueUnavailableError
from inferfleet.settings import Settings
from worker.lanes import LanePoller

log = logging.getLogger(__name__)

# What a commit meets while the group rebalances: the member rejoins at its next poll.
REFUSED = (CommitFailedError, RebalanceInProgressError)


class JobConsumer:
    """One group member over the topics of the models a worker serves.

    Offsets are committed only by `commit()`, which the worker calls after the polled
    batch's results are in Postgres: a crash before it means redelivery, never loss.
    """

    def __init__(self, settings: Settings, topics: Sequence[str]) -> None:
        self._settings = settings
        self._consumer: KafkaConsumer = make_consumer(
            settings, topics, client_id="inferfleet-worker"
        )
        # Told, inside a `poll`, of partitions a rebalance is about to take away.
        self.on_revoke: Callable[[], None] | None = None
        self.revocations = 0  # how many rebalances took partitions away
        # Offsets of written results whose commit the group refused, tried again at the
        # next commit or poll (`commit_offsets`).
        self._owed: dict[TopicPartition, int] = {}
        self._consumer.subscribe(list(topics), listener=_Revoked(self))
        self._producer: KafkaProducer | None = None
        self._sending = threading.Lock()
        self._lanes = LanePoller(
            self._consumer,
            settings.poll_max_records,
            settings.poll_timeout_ms,
            batch_share=settings.lane_batch_share,
        )

    def poll(self) -> list[Any]:
        """Up to `poll_max_records` records, every fetched interactive record first and
        the rest from the batch lane, fewer of those while the interactive lane is
        active (`worker.lanes`).

        Should a rebalance take partitions inside the call (between the lanes' two
        polls), records of those partitions are left out: their new owner reads them
        from the committed offset.
        """
        if self._owed:
            self.commit_offsets({})
        before = self.revocations
        records = self._lanes.poll()
        if self.revocations == before or not records:
            return records
        kept = self._consumer.assignment()
        return [r for r in records if TopicPartition(r.topic, r.partition) in kept]

    def poll_interactive(self, timeout_ms: int) -> list[Any]:
        """Interactive records, waiting up to `timeout_ms` for one; none of the batch
        lane (`worker.lanes.LanePoller.poll_interactive`)."""
        return self._lanes.poll_interactive(timeout_ms)

    def commit_offsets(self, offsets: Mapping[tuple[str, int], int]) -> bool:
        """Commit each (topic, partition) at the given offset (the next one to read),
        with any offsets an earlier refused commit left owed; False if refused again.

        A commit refused while the group rebalances, or after this member was dropped
        from it, stays owed and is tried again at the next commit or poll: with no later
        record on such a partition nothing else would move its committed offset up to
        the written results, so its lag would never reach zero (and the autoscaler would
        never stop the worker). Offsets a member committed past meanwhile are dropped.
        """
        found = self._still_owed()
        for (topic, partition), offset in offsets.items():
            tp = TopicPartition(topic, partition)
            found[tp] = max(offset, found.get(tp, offset))
        if not found:
            return True
        try:
            self._consumer.commit(
                offsets={tp: OffsetAndMetadata(o, "", -1) for tp, o in found.items()}
            )
        except REFUSED as e:
            log.warning("offset commit refused; tried again once the group settles: %s", e)
            self._owed = found
            return False
        self._owed = {}
        return True

    def _still_owed(self) -> dict[TopicPartition, int]:
        """Owed offsets not yet passed by a commit of the group's (this member's
        partitions, or ones a rebalance gave away: their results are written either way);
        those passed are forgotten, so they are looked up no more."""
        self._owed = {
            tp: o for tp, o in self._owed.items() if o > (self._consumer.committed(tp) or 0)
        }
        return dict(self._owed)

    def commit(self) -> bool:
        """Commit the positions after the last poll; False if a rebalance took them away.

        After a failed commit the records are redelivered to the partitions' new owner,
        whose writes the status guards make harmless.
        """
        try:
            self._consumer.commit()
        except REFUSED as e:
            log.warning("offset commit failed, records will be redelivered: %s", e)
            return False
        return True

    def rewind(self) -> None:
        """Move every assigned partition back to its committed offset.

        After a batch failed part-way, the next poll then returns the same records
        again instead of running past them.
        """
        for tp in self._consumer.assignment():
            committed = self._consumer.committed(tp)
            if committed is None:
                self._consumer.seek_to_beginning(tp)
            else:
                self._consumer.seek(tp, committed)

    def send(self, records: Sequence[Record]) -> None:
        """Produce records (dead letters, retries) and wait for Kafka's acks; the
        pipeline's execution threads call it at once, so one send runs at a time.

        QueueUnavailableError if Kafka does not take them all; the producer is then made
        anew for the next call, since an idempotent producer that saw a batch fail keeps
        failing every later one.
        """
        if not records:
            return
        with self._sending:
            if self._producer is None:
                self._producer = make_producer(self._settings, client_id="inferfleet-worker")
            try:
                send_all(self._producer, records, self._settings.produce_timeout_s)
            except QueueUnavailableError:
                self._drop_producer()
                raise

    def _drop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            producer.close(timeout=1)
        except KafkaError as e:  # it is dropped either way; what it held was not acked
            log.warning("closing the failed producer: %r", e)

    def close(self) -> None:
        """Leave the group (so partitions move at once) and close the producer."""
        self._consumer.close(autocommit=False)
        if self._producer is not None:
            self._producer.close(timeout=5)


class _Revoked(ConsumerRebalanceListener):  # type: ignore[misc]
    """Calls the consumer's `on_revoke` before a rebalance takes its partitions."""

    def __init__(self, consumer: JobConsumer) -> None:
        self._consumer = consumer

    def on_partitions_revoked(self, revoked: Any) -> None:
        if not revoked:
            return
        self._consumer.revocations += 1
        if self._consumer.on_revoke is not None:
            self._consumer.on_revoke()

    def on_partitions_assigned(self, assigned: Any) -> None:
        return
