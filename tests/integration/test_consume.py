"""The worker's Kafka side against the real broker: commit, rewind, dead letters."""

from __future__ import annotations

import uuid

from kafka import KafkaProducer

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
