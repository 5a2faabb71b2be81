"""job reports: a classification job's confusion matrix and per-class scores (issue 24)

Revision ID: c4a1e2400004
Revises: b10b5c000004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import api.db.models

revision = "c4a1e2400004"
down_revision = "b10b5c000004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_reports",
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("checkpoint_id", sa.BigInteger(), nullable=True),
        sa.Column("checkpoint_step", sa.BigInteger(), nullable=False),
        sa.Column("checkpoint_epoch", sa.Integer(), nullable=False),
        sa.Column("checkpoint_is_best", sa.Boolean(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("created_at", api.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id"),
    )


def downgrade() -> None:
    op.drop_table("job_reports")
