"""Every file of a model package (graph and preprocessing assets), by file name.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "model_versions",
        sa.Column("files", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    )
    # Versions registered before this revision have one file: the graph.
    op.execute(
        """
        UPDATE model_versions
           SET files = jsonb_build_object(
                   manifest->>'model_file',
                   jsonb_build_object('uri', artifact_uri, 'sha256', sha256,
                                      'size_bytes', size_bytes))
        """
    )


def downgrade() -> None:
    op.drop_column("model_versions", "files")
