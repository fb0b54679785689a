"""The worker's Kafka side against the real broker: commit, rewind, dead letters."""

from __future__ import annotations

import threading
import time
import uuid

from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient

from inferfleet.clients.topics import ensure_topics
from inferfleet.settings import Settings
from tests.integration.conftest import eventually
from worker.consume import JobConsumer


def test_rewind_returns_to_the_committed_offsets(settings: Settings, kafka: str) -> None:
    topic = f"test.consume.{uuid.uuid4().hex[:8]}"
    ensure_topics(settings, [topic], partitions=1, replication=1)
    producer = KafkaProducer(bootstrap_servers=kafka)
    for i in range(10):
        producer.send(topic, key=str(i).encode(), value=b"x")
    producer.flush()
    producer.close()
    consumer = JobConsumer(
        settings.model_copy(update={"worker_group": f"g-{topic}", "poll_max_records": 4}),
        [topic],
    )
    try:
        first = eventually(consumer.poll, "the first records")
        assert [r.offset for r in first] == [0, 1, 2, 3]
        assert consumer.commit()
        second = consumer.poll()
        assert [r.offset for r in second] == [4, 5, 6, 7]

        consumer.rewind()  # the second batch failed before its commit
        again = consumer.poll()
        assert [r.offset for r in again] == [4, 5, 6, 7]
    finally:
        consumer.close()


def test_a_commit_refused_while_out_of_the_group_is_made_after_it_rejoins(
    settings: Settings, kafka: str
) -> None:
    """Results written, their commit refused because the member fell out of the group
    (a second member joined, and the first did not poll within the rebalance timeout,
    `max_poll_interval_ms`), and no record left to read: the offsets must still reach
    Kafka once it rejoins, or the lag would never return to zero."""
    topic = f"test.consume.{uuid.uuid4().hex[:8]}"
    ensure_topics(settings, [topic], partitions=2, replication=1)
    producer = KafkaProducer(bootstrap_servers=kafka)
    for partition in (0, 1):
        for _ in range(20):
            producer.send(topic, value=b"x", partition=partition)
    producer.flush()
    producer.close()
    group = f"g-{topic}"
    member = settings.model_copy(
        update={"worker_group": group, "poll_max_records": 100, "max_poll_interval_ms": 1000}
    )
    first, second = JobConsumer(member, [topic]), JobConsumer(member, [topic])
    admin = KafkaAdminClient(bootstrap_servers=kafka)
    stop = threading.Event()

    def committed() -> dict[int, int]:
        found = admin.list_group_offsets({group: None}).get(group, {})
        return {tp.partition: meta.offset for tp, meta in found.items() if tp.topic == topic}

    def keep_polling() -> None:
        while not stop.is_set():
            second.poll()

    joining = threading.Thread(target=keep_polling, daemon=True)
    try:
        eventually(first.poll, "the first records")
        assert first.commit_offsets({(topic, 0): 1, (topic, 1): 1})
        joining.start()
        offset = 1
        while first.commit_offsets({(topic, 0): offset + 1, (topic, 1): offset + 1}):
            offset += 1
            assert offset < 20, "the first member stayed in the group without polling"
            time.sleep(0.5)
        assert committed() == {0: offset, 1: offset}

        # It rejoins at its next polls; the refused offsets then reach Kafka, with no
        # new commit asked for (the second member commits nothing).
        def made() -> bool:
            first.poll()
            return committed() == {0: offset + 1, 1: offset + 1}

        eventually(made, f"the refused offset {offset + 1} to reach Kafka")
    finally:
        stop.set()
        joining.join(timeout=30)
        first.close()
        second.close()
        admin.close()
