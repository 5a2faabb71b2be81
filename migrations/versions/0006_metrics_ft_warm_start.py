"""jobs.warm_start: what a warm-started job loads from its source, planned at submit (issue 24)

Revision ID: e7f0a2600006
Revises: c4a1e2400004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "e7f0a2600006"
down_revision = "c4a1e2400004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("warm_start", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("warm_start")
