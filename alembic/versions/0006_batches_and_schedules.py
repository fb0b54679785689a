"""Batches, schedules, and what sweeps need: line numbers of batch jobs, produce times.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("line", sa.Integer))
    op.add_column("jobs", sa.Column("custom_id", sa.Text))
    op.add_column("jobs", sa.Column("produced_at", sa.DateTime(timezone=True)))
    op.create_index(
        "jobs_batch_line",
        "jobs",
        ["batch_id", "line"],
        postgresql_where=sa.text("batch_id IS NOT NULL"),
    )
    op.create_index(
        "jobs_unproduced",
        "jobs",
        ["created_at"],
        postgresql_where=sa.text("status = 'queued' AND produced_at IS NULL"),
    )
    op.create_index("jobs_completed", "jobs", ["completed_at"])
    op.create_table(
        "batches",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("tenant", sa.Text, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("version", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("input_uri", sa.Text, nullable=False),
        sa.Column("output_prefix", sa.Text, nullable=False),
        sa.Column("output_uri", sa.Text),
        sa.Column("webhook", JSONB),
        sa.Column("skip_invalid", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("total", sa.Integer, nullable=False, server_default="0"),
        sa.Column("invalid_lines", JSONB, nullable=False, server_default="[]"),
        sa.Column("error", JSONB),
        sa.Column("schedule_name", sa.Text),
        sa.Column("scheduled_for", sa.DateTime(timezone=True)),
        sa.Column("resubmitted_from", sa.Text),
        sa.Column("request_id", sa.Text),
        sa.Column("lease_until", sa.DateTime(timezone=True)),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("schedule_name", "scheduled_for", name="batches_one_per_firing"),
    )
    op.create_index("batches_tenant_created", "batches", ["tenant", "created_at"])
    op.create_index("batches_status", "batches", ["status"])
    op.create_table(
        "schedules",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("cron", sa.Text, nullable=False),
        sa.Column("timezone", sa.Text, nullable=False),
        sa.Column("tenant", sa.Text, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("version", sa.Text, nullable=False),
        sa.Column("input_uri", sa.Text, nullable=False),
        sa.Column("output_prefix", sa.Text, nullable=False),
        sa.Column("webhook", JSONB),
        sa.Column("catch_up", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("last_fired_for", sa.DateTime(timezone=True)),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )


def downgrade() -> None:
    op.drop_table("schedules")
    op.drop_table("batches")
    op.drop_index("jobs_completed", "jobs")
    op.drop_index("jobs_unproduced", "jobs")
    op.drop_index("jobs_batch_line", "jobs")
    op.drop_column("jobs", "produced_at")
    op.drop_column("jobs", "custom_id")
    op.drop_column("jobs", "line")
