"""Claim tokens on jobs, and an index for the sweep of produced jobs no worker claimed.

`claim_token` names the worker that holds a `running` job; every later write of the job
(its result, its requeue, giving it back) is guarded by it (`worker.persist`). The
column is nullable without a default, so adding it rewrites no row. The index is built
concurrently, so a large `jobs` table keeps taking writes while it builds.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("claim_token", sa.Text(), nullable=True))
    with op.get_context().autocommit_block():
        op.create_index(
            "jobs_queued_produced",
            "jobs",
            ["model", "lane", "produced_at"],
            postgresql_where=sa.text("status = 'queued'"),
            postgresql_concurrently=True,
            if_not_exists=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(
            "jobs_queued_produced", "jobs", postgresql_concurrently=True, if_exists=True
        )
    op.drop_column("jobs", "claim_token")
