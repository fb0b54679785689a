"""A job's trace context: `jobs.traceparent`, the W3C header of the span that made it
(the submit, or the batch ingest), continued by the worker and the dispatcher.

Nullable with no default: adding it rewrites no rows. Jobs made before, or while tracing
is off, have none.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("traceparent", sa.Text()))


def downgrade() -> None:
    op.drop_column("jobs", "traceparent")
