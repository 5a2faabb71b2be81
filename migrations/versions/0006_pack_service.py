"""packed sweeps (issue 26, branch pack-service): sweeps.execution, jobs.pack_id, sweep_packs

Revision ID: d26a0c500006
Revises: c4a1e2400004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import api.db.models

revision = "d26a0c500006"
down_revision = "c4a1e2400004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sweeps") as batch:
        batch.add_column(sa.Column("execution", sa.JSON(), nullable=True))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("pack_id", sa.String(length=32), nullable=True))
    op.create_table(
        "sweep_packs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("sweep_id", sa.String(length=32), nullable=False),
        sa.Column("job_ids", sa.JSON(), nullable=False),
        sa.Column("pack_key", sa.String(length=64), nullable=False),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.Column("started_at", api.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_sweep_packs_sweep_started", "sweep_packs", ["sweep_id", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_sweep_packs_sweep_started", table_name="sweep_packs")
    op.drop_table("sweep_packs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("pack_id")
    with op.batch_alter_table("sweeps") as batch:
        batch.drop_column("execution")
