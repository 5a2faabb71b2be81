"""storage: a team's optional storage quota, teams.max_storage_bytes (issue 17)

Revision ID: c3d17e000002
Revises: 3295140b53bf
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c3d17e000002"
down_revision = "3295140b53bf"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("teams") as batch:
        batch.add_column(sa.Column("max_storage_bytes", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("teams") as batch:
        batch.drop_column("max_storage_bytes")
