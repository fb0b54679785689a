"""Kafka topic names and their creation.

One topic per model and lane: `inferfleet.jobs.<model>.<lane>`, keyed by job ID.
Partitions cap how many workers can share a topic, so create enough for the largest fleet.
"""

from __future__ import annotations

import logging
from typing import Literal

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from inferfleet.clients.kafkaconn import explain, kafka_connection
from inferfleet.settings import Settings

log = logging.getLogger(__name__)

Lane = Literal["interactive", "batch"]
LANES: tuple[Lane, ...] = ("interactive", "batch")


def job_topic(model: str, lane: Lane = "interactive") -> str:
    """The topic that carries `model`'s jobs on `lane`."""
    return f"inferfleet.jobs.{model}.{lane}"


def parse_job_topic(topic: str) -> tuple[str, Lane] | None:
    """The (model, lane) whose jobs `topic` carries; None for any other topic."""
    prefix = "inferfleet.jobs."
    model, _, lane = topic.removeprefix(prefix).rpartition(".")
    if not topic.startswith(prefix) or not model:
        return None
    for known in LANES:
        if lane == known:
            return model, known
    return None


def dlq_topic(topic: str) -> str:
    """The dead-letter topic beside `topic`."""
    return f"{topic}.dlq"


def model_topics(model: str) -> list[str]:
    """Every job topic of `model`, interactive lane first."""
    return [job_topic(model, lane) for lane in LANES]


def ensure_topics(
    settings: Settings,
    topics: list[str],
    partitions: int,
    replication: int,
    timeout_ms: int = 30_000,
) -> None:
    """Create the topics that do not exist yet; existing ones are left as they are.

    Raises KafkaError when the cluster does not answer within `timeout_ms`; the log
    line before it says why, a refused login included.
    """
    try:
        admin = KafkaAdminClient(
            **kafka_connection(settings),
            client_id="inferfleet-admin",
            bootstrap_timeout_ms=timeout_ms,
            request_timeout_ms=timeout_ms,
        )
    except KafkaError as e:
        log.error(
            "cannot reach Kafka at %s to create topics: %s",
            settings.kafka_bootstrap,
            explain(e, settings),
        )
        raise
    try:
        existing = set(admin.list_topics())
        missing = [t for t in topics if t not in existing]
        for topic in missing:
            try:
                admin.create_topics(
                    [NewTopic(topic, num_partitions=partitions, replication_factor=replication)]
                )
                log.info("created topic %s with %d partitions", topic, partitions)
            except TopicAlreadyExistsError:
                pass  # another process created it between our list and create
    finally:
        admin.close()


def lane_of(topic: str) -> str:
    """The lane of a job topic (`job_topic`'s last part); `unknown` for other topics."""
    lane = topic.rpartition(".")[2]
    return lane if lane in LANES else "unknown"
