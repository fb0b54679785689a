"""A batch's lease names its holder: `lease_owner`, a token drawn for each take.

Nullable with no default, so adding it rewrites no rows. A batch leased before the
upgrade has no owner; its lease runs out and the next take names one.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("batches", sa.Column("lease_owner", sa.Text()))


def downgrade() -> None:
    op.drop_column("batches", "lease_owner")
