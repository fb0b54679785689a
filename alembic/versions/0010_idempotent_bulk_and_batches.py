"""Idempotency keys of bulk submits and batches: what a key bound may be many jobs
(`job_ids`, in item order) or a batch (`batch_id`), so `job_id` may be empty.

Both columns are nullable with no default and dropping NOT NULL only changes the
catalogue: no row is rewritten. A key bound before the upgrade names one job, as before.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("idempotency_keys", sa.Column("job_ids", sa.ARRAY(sa.Text())))
    op.add_column("idempotency_keys", sa.Column("batch_id", sa.Text()))
    op.alter_column("idempotency_keys", "job_id", nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM idempotency_keys WHERE job_id IS NULL")
    op.alter_column("idempotency_keys", "job_id", nullable=False)
    op.drop_column("idempotency_keys", "batch_id")
    op.drop_column("idempotency_keys", "job_ids")
