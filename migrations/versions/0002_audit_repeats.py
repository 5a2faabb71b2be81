"""audit: audit_log.repeats, so repeated anonymous 401s from one client are one row (issue 18)

Revision ID: f6b18d000002
Revises: 3295140b53bf
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "f6b18d000002"
down_revision = "3295140b53bf"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(
            sa.Column("repeats", sa.Integer(), nullable=False, server_default=sa.text("1"))
        )
        batch.create_index("ix_audit_log_at", ["at"])


def downgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_index("ix_audit_log_at")
        batch.drop_column("repeats")
