"""The benchmark's workload: a model published under a fresh name, its jobs and messages.

Requests fit the package: fraud rows drawn like its training data (`synthetic_inputs`),
or, for a text model, seeded sentences of 8 to 60 words (`synthetic_sentences`).
Everything the bench makes carries one unique model name (`bench-<hex>`): its registry
rows, its topics, its S3 objects and its job rows. That is how `remove` finds what to
delete without touching anything else. Job rows have the columns `api/plumbing/submit.py`
writes; messages are `inferfleet.jobs.messages` v1, keyed by job ID, on the interactive topic.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError
from psycopg.types.json import Jsonb
from sqlalchemy import Engine, text

from bench.inputs import synthetic_inputs as synthetic_inputs  # the benches import it here
from bench.inputs import synthetic_sentences
from inferfleet.clients.broker import make_producer, send_all
from inferfleet.clients.kafkaconn import kafka_connection
from inferfleet.clients.objectstore import split_uri
from inferfleet.clients.topics import dlq_topic, job_topic, model_topics
from inferfleet.ids import new_job_id
from inferfleet.jobs import messages
from inferfleet.models import publish
from inferfleet.models.registry import ModelVersion
from inferfleet.settings import Settings
from inferfleet.tables import TERMINAL_STATUSES, jobs, model_aliases, model_versions

log = logging.getLogger(__name__)

TENANT = "bench"
PRODUCE_CHUNK = 10_000
COPY_COLUMNS = (
    "id",
    "tenant",
    "model",
    "version",
    "status",
    "lane",
    "inputs",
    "metadata",
    "webhook",
    "request_id",
    "deadline",
    "created_at",
)


@dataclass(frozen=True)
class Job:
    """One job of the workload: its ID and request body."""

    id: str
    inputs: dict[str, Any]
    traceparent: str | None = None  # the trace its message continues (bench/tracing.py)


def publish_fresh(settings: Settings, engine: Engine, s3: Any, package: Path) -> ModelVersion:
    """Publish `package` as version 1 of a new model `bench-<hex>` (topics included)."""
    return publish.publish(settings, engine, s3, package, name=f"bench-{secrets.token_hex(4)}")


def synthetic_requests(version: ModelVersion, count: int, seed: int) -> list[dict[str, Any]]:
    """`count` requests the package accepts: sentences for a tokenizer, else fraud rows."""
    step = version.manifest.get("preprocessing") or {}
    if step.get("kind") == "tokenizer":
        field = step.get("text_field", "text")
        return [{field: text} for text in synthetic_sentences(count, seed)]
    return synthetic_inputs(version.request_schema, count, seed)


def make_jobs(request_schema: dict[str, Any], count: int, seed: int) -> list[Job]:
    """`count` fraud jobs with new IDs."""
    return jobs_from(synthetic_inputs(request_schema, count, seed))


def jobs_from(requests: Sequence[dict[str, Any]]) -> list[Job]:
    """One job with a new ID per request."""
    return [Job(new_job_id(), inputs) for inputs in requests]


def insert_queued(engine: Engine, model: str, version: int, batch: Sequence[Job], run: str) -> None:
    """COPY one `queued` row per job, as the API would insert it; `run` goes in request_id."""
    now = datetime.now(UTC)
    columns = ", ".join(COPY_COLUMNS)
    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cursor, cursor.copy(f"COPY jobs ({columns}) FROM STDIN") as copy:
            for job in batch:
                copy.write_row(
                    (
                        job.id,
                        TENANT,
                        model,
                        version,
                        "queued",
                        "interactive",
                        Jsonb(job.inputs),
                        Jsonb({}),
                        None,
                        run,
                        None,
                        now,
                    )
                )


def analyze(engine: Engine) -> None:
    """Refresh the planner's statistics of `jobs`, so they count the backlog just inserted.

    The engine plans the worker's statements for their actual parameters
    (`inferfleet.clients.db.make_engine`), so stale statistics no longer make the claim slow
    (bench/claim_plans.py shows the generic plan it avoids); this only keeps runs alike.
    """
    with engine.begin() as conn:
        conn.execute(text("ANALYZE jobs"))


def produce(settings: Settings, version: ModelVersion, batch: Sequence[Job], run: str) -> None:
    """Put every job's message on the model's interactive topic and wait for the acks."""
    topic = job_topic(version.name)
    now = datetime.now(UTC)
    producer = make_producer(settings, client_id="inferfleet-bench")
    try:
        for start in range(0, len(batch), PRODUCE_CHUNK):
            records = [
                messages.record(
                    topic,
                    message_row(version, job.id, job.inputs, now, run)
                    | {"traceparent": job.traceparent},
                )
                for job in batch[start : start + PRODUCE_CHUNK]
            ]
            send_all(producer, records, timeout_s=60)
    finally:
        producer.close(timeout=10)


def message_row(
    version: ModelVersion, job_id: str, inputs: Any, now: datetime, request_id: str
) -> dict[str, Any]:
    """The columns of a job row that its message carries (`messages.from_row`)."""
    return {
        "id": job_id,
        "tenant": TENANT,
        "model": version.name,
        "version": version.version,
        "inputs": inputs,
        "input_uri": None,
        "created_at": now,
        "request_id": request_id,
    }


COUNT_BY_STATUS = text(
    "SELECT status, count(*) AS n FROM jobs WHERE model = :model AND request_id = :run "
    "GROUP BY status"
)
SPAN = text(
    "SELECT min(started_at) AS first_started, max(completed_at) AS last_completed "
    "FROM jobs WHERE model = :model AND request_id = :run"
)


@dataclass(frozen=True)
class Completion:
    """When a run's jobs ran, by the database's clock and by the bench's poll."""

    statuses: dict[str, int]
    first_started: datetime
    last_completed: datetime
    seen_done: datetime

    def rate(self, count: int) -> float:
        """Jobs/s from the first claim to the poll that first saw every job ended."""
        return count / (self.seen_done - self.first_started).total_seconds()

    def db_rate(self, count: int) -> float:
        """Jobs/s from the first claim to the last `completed_at`, both the database's."""
        return count / (self.last_completed - self.first_started).total_seconds()


def wait_until_ended(
    engine: Engine,
    model: str,
    run: str,
    count: int,
    alive: Callable[[], bool],
    timeout_s: float,
    every_s: float = 0.2,
) -> Completion:
    """Poll the run's status counts until all `count` jobs are terminal.

    `seen_done` is taken just before the query that first saw them all ended, so it is
    at most one poll interval plus one query after the last commit. Raises
    RuntimeError if `alive()` turns false or the timeout passes first.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        asked_at = datetime.now(UTC)
        with engine.connect() as conn:
            statuses = {r.status: r.n for r in conn.execute(COUNT_BY_STATUS, _where(model, run))}
        if sum(n for s, n in statuses.items() if s in TERMINAL_STATUSES) >= count:
            break
        if not alive():
            raise RuntimeError(f"the process under test exited early; job counts {statuses}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"not done after {timeout_s:.0f} s; job counts {statuses}")
        time.sleep(every_s)
    with engine.connect() as conn:
        span = conn.execute(SPAN, _where(model, run)).one()
    return Completion(statuses, span.first_started, span.last_completed, asked_at)


def _where(model: str, run: str) -> dict[str, str]:
    return {"model": model, "run": run}


def remove(settings: Settings, engine: Engine, s3: Any, version: ModelVersion, group: str) -> None:
    """Delete the bench model's job rows, registry rows, topics, S3 objects and `group`."""
    name = version.name
    with engine.begin() as conn:
        conn.execute(jobs.delete().where(jobs.c.model == name))
        conn.execute(model_aliases.delete().where(model_aliases.c.name == name))
        conn.execute(model_versions.delete().where(model_versions.c.name == name))
    for ref in version.files.values():  # the graph and every preprocessing asset
        bucket, key = split_uri(ref.uri)
        s3.delete_object(Bucket=bucket, Key=key)
    topics = model_topics(name)
    admin = KafkaAdminClient(**kafka_connection(settings), client_id="bench")
    try:
        admin.delete_topics(topics + [dlq_topic(t) for t in topics])
        admin.delete_groups([group])
    except KafkaError as e:
        log.warning("could not delete the topics of %s or group %s: %s", name, group, e)
    finally:
        admin.close()
