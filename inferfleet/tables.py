"""The database tables, as SQLAlchemy Core metadata.

Alembic migrations are the only way the schema changes; this module mirrors them so code
can build statements. Keep the two in step.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

metadata = MetaData()

JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "expired")
TERMINAL_STATUSES = ("succeeded", "failed", "cancelled", "expired")

# `jobs`, `webhook_events` and `webhook_attempts` are range-partitioned by day on a
# ULID-shaped key (`inferfleet.jobs.partitions`, migration 0013); statements name the
# parent tables and Postgres routes and prunes.
jobs = Table(
    "jobs",
    metadata,
    Column("id", Text, primary_key=True),
    Column("tenant", Text, nullable=False),
    Column("model", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("status", Text, nullable=False),
    Column("lane", Text, nullable=False),
    Column("inputs", JSONB),
    Column("input_uri", Text),
    Column("outputs", JSONB),
    Column("output_uri", Text),
    Column("error", JSONB),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("metadata", JSONB, nullable=False, server_default="{}"),
    Column("webhook", JSONB),
    Column("batch_id", Text),
    # A batch job's 1-based line in the batch's input file, and the line's custom_id.
    Column("line", Integer),
    Column("custom_id", Text),
    Column("request_id", Text),
    # The W3C traceparent of the span that made the job (inferfleet.tracing), if traced.
    Column("traceparent", Text),
    Column("deadline", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("started_at", DateTime(timezone=True)),
    Column("completed_at", DateTime(timezone=True)),
    # When Kafka acknowledged the job's latest message (a worker's retry or put-back:
    # just before it is sent); a `queued` job without it was never produced (a crash
    # between insert and produce) and is produced by the sweeper.
    Column("produced_at", DateTime(timezone=True)),
    # The token of the worker holding a `running` job; every later write of the job by a
    # worker names it, so a worker that lost the job writes nothing (`worker.persist`).
    Column("claim_token", Text),
    # A tenant's jobs newest first, after a cursor (`api.plumbing.paging`).
    Index("jobs_tenant_id", "tenant", "id"),
    Index("jobs_status", "status"),
    Index("jobs_batch_line", "batch_id", "line", postgresql_where=text("batch_id IS NOT NULL")),
    Index(
        "jobs_unproduced",
        "created_at",
        postgresql_where=text("status = 'queued' AND produced_at IS NULL"),
    ),
    Index("jobs_completed", "completed_at"),
    # Produced jobs still waiting, per topic, for the sweep of messages no worker claimed.
    Index(
        "jobs_queued_produced",
        "model",
        "lane",
        "produced_at",
        postgresql_where=text("status = 'queued'"),
    ),
    Index(
        "jobs_queued_deadline",
        "deadline",
        postgresql_where=text("status = 'queued' AND deadline IS NOT NULL"),
    ),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("name", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("artifact_uri", Text, nullable=False),
    Column("sha256", Text, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("request_schema", JSONB, nullable=False),
    Column("output_schema", JSONB, nullable=False),
    Column("manifest", JSONB, nullable=False),
    # {file name: {"uri", "sha256", "size_bytes"}} for every file of the package.
    Column("files", JSONB, nullable=False, server_default="{}"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("name", "version"),
)

model_aliases = Table(
    "model_aliases",
    metadata,
    Column("name", Text, nullable=False),
    Column("alias", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("name", "alias"),
    ForeignKeyConstraint(["name", "version"], ["model_versions.name", "model_versions.version"]),
)

tenants = Table(
    "tenants",
    metadata,
    Column("name", Text, primary_key=True),
    Column("webhook_secret", Text, nullable=False),
    Column("previous_webhook_secret", Text),
    Column("previous_secret_expires_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Text, primary_key=True),
    Column("tenant", Text, ForeignKey("tenants.name"), nullable=False),
    Column("scope", Text, nullable=False),
    # sha256 of the key: keys are 256 random bits, so a fast hash is enough.
    Column("key_hash", Text, nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("revoked_at", DateTime(timezone=True)),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("tenant", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("request_hash", Text, nullable=False),
    Column("job_id", Text),  # the first (or only) job a submit made
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("job_ids", ARRAY(Text)),  # a bulk submit's jobs, in item order
    Column("batch_id", Text),  # the batch a `POST /v1/batches` made
    PrimaryKeyConstraint("tenant", "key"),
)

# The webhook outbox. An event is written in the transaction that ends its job (or
# batch); its id is the `webhook-id` of every attempt. Each attempt is a row, `pending`
# until the dispatcher has tried it, then `delivered` or `failed`.
EVENT_STATES = ("pending", "delivered", "failed")

webhook_events = Table(
    "webhook_events",
    metadata,
    Column("id", Text, primary_key=True),
    Column("tenant", Text, nullable=False),
    Column("job_id", Text),
    Column("batch_id", Text),
    Column("type", Text, nullable=False),
    Column("url", Text, nullable=False),
    # The JSON body, rendered at the first attempt so every attempt sends the same bytes.
    Column("body", Text),
    Column("state", Text, nullable=False),
    Column("retry_until", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("webhook_events_job", "job_id"),
    Index("webhook_events_batch", "batch_id"),
)

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    # The key holds the partition key (`event_id`): an attempt lies in its event's day.
    Column("id", Text, primary_key=True),
    Column("event_id", Text, primary_key=True),
    Column("attempt", Integer, nullable=False),
    Column("state", Text, nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("response_status", Integer),
    Column("error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("finished_at", DateTime(timezone=True)),
    Index("webhook_attempts_event", "event_id"),
    Index("webhook_attempts_due", "due_at", postgresql_where=text("state = 'pending'")),
)

BATCH_STATUSES = ("validating", "queued", "running", "completed", "failed", "cancelled")

# A batch scores every line of an input file (JSONL, CSV or Parquet) as one job each.
# `validating` batches are picked up by the scheduler's ingest task, whoever made them
# (the API, or a schedule's firing); `version` is a version number or an alias until
# ingest resolves it.
batches = Table(
    "batches",
    metadata,
    Column("id", Text, primary_key=True),
    Column("tenant", Text, nullable=False),
    Column("model", Text, nullable=False),
    Column("version", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("input_uri", Text, nullable=False),
    # Where the results go (the request's `output_uri`, a prefix), and the results file.
    Column("output_prefix", Text, nullable=False),
    Column("output_uri", Text),
    Column("webhook", JSONB),
    Column("skip_invalid", Boolean, nullable=False, server_default=false()),
    Column("total", Integer, nullable=False, server_default="0"),
    Column("invalid_lines", JSONB, nullable=False, server_default="[]"),
    Column("error", JSONB),
    # Set on batches a schedule fired: at most one batch per (schedule, scheduled time).
    Column("schedule_name", Text),
    Column("scheduled_for", DateTime(timezone=True)),
    Column("resubmitted_from", Text),
    Column("request_id", Text),
    # A task working on the batch (ingest, writing results) holds it until then, under
    # a token drawn when it took the batch (`scheduler.lease`).
    Column("lease_until", DateTime(timezone=True)),
    Column("lease_owner", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("completed_at", DateTime(timezone=True)),
    UniqueConstraint("schedule_name", "scheduled_for", name="batches_one_per_firing"),
    Index("batches_tenant_created", "tenant", "created_at"),
    Index("batches_status", "status"),
)

schedules = Table(
    "schedules",
    metadata,
    Column("name", Text, primary_key=True),
    Column("cron", Text, nullable=False),
    Column("timezone", Text, nullable=False),
    Column("tenant", Text, nullable=False),
    Column("model", Text, nullable=False),
    Column("version", Text, nullable=False),
    Column("input_uri", Text, nullable=False),
    Column("output_prefix", Text, nullable=False),
    Column("webhook", JSONB),
    # Whether a firing missed while no scheduler ran is made up (once) on return.
    Column("catch_up", Boolean, nullable=False, server_default=true()),
    Column("last_fired_for", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
