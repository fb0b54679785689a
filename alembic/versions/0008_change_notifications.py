"""Triggers that announce changes on Postgres channels: keys, models, jobs that ended.

The API's caches (key -> caller, alias -> version) and its long-polls listen on these
channels (`inferfleet.clients.notify`), so a change made by any process reaches every
API process.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from collections.abc import Sequence

from alembic import op
from inferfleet.clients.notify import DROP_TRIGGERS_SQL, TRIGGERS_SQL

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(TRIGGERS_SQL)


def downgrade() -> None:
    op.execute(DROP_TRIGGERS_SQL)
