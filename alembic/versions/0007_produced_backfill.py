"""Jobs from before `produced_at` count as produced; an index for the expiry sweep.

Without the backfill the first sweep after an upgrade would produce every older queued
job a second time (harmless to results, but a needless burst on the queue).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("UPDATE jobs SET produced_at = created_at WHERE produced_at IS NULL")
    op.create_index(
        "jobs_queued_deadline",
        "jobs",
        ["deadline"],
        postgresql_where=sa.text("status = 'queued' AND deadline IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("jobs_queued_deadline", "jobs")
