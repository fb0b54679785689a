"""Webhook outbox: one event per job (or batch) outcome, and every delivery attempt.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webhook_events",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("tenant", sa.Text, nullable=False),
        sa.Column("job_id", sa.Text),
        sa.Column("batch_id", sa.Text),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("body", sa.Text),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("retry_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    op.create_index("webhook_events_job", "webhook_events", ["job_id"])
    op.create_index("webhook_events_batch", "webhook_events", ["batch_id"])
    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("event_id", sa.Text, sa.ForeignKey("webhook_events.id"), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("response_status", sa.Integer),
        sa.Column("error", sa.Text),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
    )
    op.create_index("webhook_attempts_event", "webhook_attempts", ["event_id"])
    op.create_index(
        "webhook_attempts_due",
        "webhook_attempts",
        ["due_at"],
        postgresql_where=sa.text("state = 'pending'"),
    )


def downgrade() -> None:
    op.drop_table("webhook_attempts")
    op.drop_table("webhook_events")
