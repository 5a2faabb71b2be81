"""jobs.warm_start: what a warm-started job loads from its source, planned at submit (issue 24)

Revision ID: e7f0a2600006
Revises: de71ce500006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "e7f0a2600006"
down_revision = "de71ce500006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("warm_start", sa.JSON(), nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMN, not a batch copy of `jobs` (see 0006: its ON DELETE CASCADE).
    op.execute("ALTER TABLE jobs DROP COLUMN warm_start")
