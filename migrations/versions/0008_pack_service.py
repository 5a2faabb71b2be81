"""packed sweeps (issue 26, branch pack-service): sweeps.execution, jobs.pack_id, sweep_packs

Revision ID: d26a0c500006
Revises: e7f0a2600006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import api.db.models

revision = "d26a0c500006"
down_revision = "e7f0a2600006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("sweeps", sa.Column("execution", sa.JSON(), nullable=True))
    # Sweeps made before packing keep running one trial per worker, as they were created.
    sweeps = sa.table("sweeps", sa.column("execution", sa.JSON()))
    op.execute(sweeps.update().values(execution={"pack": "off", "max_pack": 64}))
    op.add_column("jobs", sa.Column("pack_id", sa.String(length=32), nullable=True))
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
    # Plain DROP COLUMN (SQLite >= 3.35 too): a batch copy of `jobs` on SQLite would drop
    # the table, and its ON DELETE CASCADE would empty every table that refers to it.
    op.execute("ALTER TABLE jobs DROP COLUMN pack_id")
    op.execute("ALTER TABLE sweeps DROP COLUMN execution")
