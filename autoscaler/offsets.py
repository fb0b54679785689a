"""Reads what KEDA's `kafka` scaler reads: each trigger's partitions, log-end offsets,
the consumer group's committed offsets and, where KEDA 2.21 needs them, log-start offsets.

The trigger's `bootstrapServers` names the cluster's address as pods see it; locally the
supervisor and its workers reach Kafka at `INFERFLEET_KAFKA_BOOTSTRAP`, so that is where
offsets are read (the same Kafka the workers consume from, with the same security).
"""

from __future__ import annotations

import logging

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError

from autoscaler.engine import Reading
from autoscaler.lag import PartitionOffsets
from autoscaler.spec import KafkaTrigger
from inferfleet.clients.kafkaconn import kafka_connection
from inferfleet.settings import Settings

log = logging.getLogger(__name__)


class KafkaOffsets:
    """Kafka clients for offset reads, made on first use and remade after a failure."""

    def __init__(self, settings: Settings, timeout_ms: int = 5000) -> None:
        self._settings = settings
        self._timeout_ms = timeout_ms
        self._consumer: KafkaConsumer | None = None
        self._admin: KafkaAdminClient | None = None

    def read(self, trigger: KafkaTrigger) -> Reading:
        """The trigger's partitions now, or the error that kept Kafka from answering."""
        try:
            return Reading(tuple(self._read(trigger)))
        except (KafkaError, OSError) as e:
            self.close()
            return Reading(error=f"{type(e).__name__}: {e}")
        except LookupError as e:
            return Reading(error=str(e.args[0]) if e.args else repr(e))

    def _clients(self) -> tuple[KafkaConsumer, KafkaAdminClient]:
        if self._consumer is None:
            self._consumer = KafkaConsumer(
                **kafka_connection(self._settings),
                client_id="inferfleet-autoscaler",
                enable_auto_commit=False,
                allow_auto_create_topics=False,
                request_timeout_ms=self._timeout_ms,
                bootstrap_timeout_ms=self._timeout_ms,
            )
        if self._admin is None:
            self._admin = KafkaAdminClient(
                **kafka_connection(self._settings),
                client_id="inferfleet-autoscaler",
                request_timeout_ms=self._timeout_ms,
                bootstrap_timeout_ms=self._timeout_ms,
            )
        return self._consumer, self._admin

    def _read(self, trigger: KafkaTrigger) -> list[PartitionOffsets]:
        consumer, admin = self._clients()
        group = trigger.consumer_group
        if trigger.topic is not None:
            topics = [trigger.topic]
        else:  # KEDA then takes every topic the group has committed offsets for
            committed_all = admin.list_group_offsets({group: None}).get(group, {})
            topics = sorted({tp.topic for tp in committed_all})
        partitions: list[TopicPartition] = []
        for topic in topics:
            numbers = consumer.partitions_for_topic(topic)
            if not numbers:
                raise LookupError(f"topic {topic} does not exist (or has no partitions)")
            limit = trigger.partition_limitation
            chosen = sorted(n for n in numbers if limit is None or n in limit)
            if not chosen:
                raise LookupError(f"no partition of {topic} is in partitionLimitation {limit}")
            partitions.extend(TopicPartition(topic, n) for n in chosen)
        if not partitions:
            return []
        end = consumer.end_offsets(partitions, self._timeout_ms)
        offsets = admin.list_group_offsets({group: partitions}).get(group, {})
        committed = {tp: _committed(offsets.get(tp)) for tp in partitions}
        start = self._log_starts(
            consumer, trigger, [tp for tp in partitions if committed[tp] is None and tp in end]
        )
        return [
            PartitionOffsets(
                topic=tp.topic,
                partition=tp.partition,
                latest=end.get(tp),
                committed=committed[tp],
                earliest=start.get(tp),
            )
            for tp in partitions
        ]

    def _log_starts(
        self, consumer: KafkaConsumer, trigger: KafkaTrigger, uncommitted: list[TopicPartition]
    ) -> dict[TopicPartition, int]:
        """Log-start offsets of the partitions without a committed offset, as KEDA 2.21
        reads them: only under `offsetResetPolicy: earliest` without
        `scaleToZeroOnInvalidOffset`. A failed read is logged and the lag falls back to the
        log-end offset, as KEDA's does, rather than failing the measurement.
        """
        if (
            not uncommitted
            or trigger.offset_reset_policy != "earliest"
            or trigger.scale_to_zero_on_invalid_offset
        ):
            return {}
        try:
            start: dict[TopicPartition, int] = consumer.beginning_offsets(
                uncommitted, self._timeout_ms
            )
        except (KafkaError, OSError) as e:
            log.warning(
                "trigger %s: log-start offsets unreadable (%s: %s); counting uncommitted "
                "partitions from their log-end offsets",
                trigger.name,
                type(e).__name__,
                e,
            )
            return {}
        return start

    def close(self) -> None:
        """Close the clients, if any were made."""
        consumer, self._consumer = self._consumer, None
        admin, self._admin = self._admin, None
        if consumer is not None:
            consumer.close()
        if admin is not None:
            admin.close()


def _committed(meta: object) -> int | None:
    """The committed offset in an OffsetAndMetadata; None for none (-1) or a missing entry."""
    offset = getattr(meta, "offset", -1)
    return offset if isinstance(offset, int) and offset >= 0 else None
