"""A validated batch's jobs, a chunk at a time: insert them, produce them, mark them.

`insert_new` looks up which jobs of the chunk exist (an earlier run of the ingest
inserted them before it crashed) and COPYs only the others, in the caller's
transaction; it returns the jobs whose messages Kafka has not acknowledged yet.
`produce` sends those and sets their `produced_at` in a transaction the caller opens
(the ingest's, under its lease). Job IDs come from (batch, line), so the same line
always names the same job.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from kafka import KafkaProducer
from psycopg.types.json import Jsonb
from sqlalchemy import Connection, text

from inferfleet import tracing
from inferfleet.clients.broker import send_all
from inferfleet.clients.objectstore import put_bytes
from inferfleet.ids import batch_job_id
from inferfleet.jobs import messages
from inferfleet.jobs.claims import claim
from inferfleet.jobs.produced import mark_produced
from inferfleet.models.registry import ModelVersion
from inferfleet.settings import Settings

# Jobs of a chunk that an earlier run of the ingest inserted, and whether they still
# need producing.
EXISTING = text(
    """
    SELECT id, produced_at IS NULL AND status = 'queued' AS unproduced
      FROM jobs WHERE id = ANY(:ids)
    """
)
COPY_COLUMNS = (
    "id",
    "tenant",
    "model",
    "version",
    "status",
    "lane",
    "inputs",
    "input_uri",
    "batch_id",
    "line",
    "custom_id",
    "request_id",
    "created_at",
)


def job_rows(
    batch: Any,
    version: ModelVersion,
    chunk: list[bytes],
    now: datetime,
    s3: Any,
    settings: Settings,
) -> list[dict[str, Any]]:
    """The job rows of spooled lines (`[line, custom_id, inputs]` as JSON); inputs above
    `claim_check_bytes` are written to S3 first, as the API does, and named by URI."""
    rows = []
    traceparent = tracing.current_traceparent()
    for spooled in chunk:
        number, custom_id, inputs = json.loads(spooled)
        job_id = batch_job_id(batch.id, number)
        input_uri = None
        if len(spooled) > settings.claim_check_bytes:  # else the inputs are smaller still
            placed = claim(settings, job_id, inputs)
            if placed is not None:
                put_bytes(s3, *placed)
                input_uri, inputs = placed[0], None
        rows.append(
            {
                "id": job_id,
                "tenant": batch.tenant,
                "model": version.name,
                "version": version.version,
                "status": "queued",
                "lane": "batch",
                "inputs": inputs,
                "input_uri": input_uri,
                "batch_id": batch.id,
                "line": number,
                "custom_id": custom_id,
                "request_id": batch.request_id,
                "traceparent": traceparent,
                "created_at": now,
            }
        )
    return rows


def insert_new(conn: Connection, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Insert the rows not there yet; returns the rows still to produce.

    The caller holds the batch row's lock, so no other ingest of the batch inserts
    between the look-up and the COPY.
    """
    found = {r.id: r.unproduced for r in conn.execute(EXISTING, {"ids": [r["id"] for r in rows]})}
    new = [row for row in rows if row["id"] not in found]
    if new:
        raw = conn.connection.driver_connection
        assert raw is not None
        columns = ", ".join(COPY_COLUMNS)
        with raw.cursor() as cursor, cursor.copy(f"COPY jobs ({columns}) FROM STDIN") as copy:
            for row in new:
                copy.write_row([_copy_value(c, row[c]) for c in COPY_COLUMNS])
    return [row for row in rows if found.get(row["id"], True)]


def _copy_value(column: str, value: Any) -> Any:
    return Jsonb(value) if column == "inputs" and value is not None else value


def produce(
    begin: Callable[[], AbstractContextManager[Connection]],
    producer: KafkaProducer,
    topic: str,
    rows: list[dict[str, Any]],
    settings: Settings,
) -> None:
    """Produce the rows' messages, wait for Kafka's acknowledgements, set `produced_at`
    in the transaction `begin` opens.

    QueueUnavailableError leaves them unproduced, for the next run of the ingest.
    """
    if not rows:
        return
    records = [messages.record(topic, row) for row in rows]
    send_all(producer, records, settings.produce_timeout_s)
    with begin() as conn:
        mark_produced(conn, [row["id"] for row in rows])
