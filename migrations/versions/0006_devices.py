"""devices: a job's device count and reservation, a worker's devices, device pools (issue 27)

Revision ID: de71ce500006
Revises: c4a1e2400004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import api.db.models

revision = "de71ce500006"
down_revision = "c4a1e2400004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("devices", sa.Integer(), server_default="1", nullable=False))
        batch_op.add_column(sa.Column("device_pool", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("device_ids", sa.JSON(), nullable=True))
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("devices", sa.Integer(), server_default="1", nullable=False))
        batch_op.add_column(sa.Column("device_pool", sa.String(length=200), nullable=True))
    op.create_table(
        "device_pools",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("devices", sa.Integer(), nullable=False),
        sa.Column("updated_at", api.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("device_pools")
    # Plain DROP COLUMN (SQLite >= 3.35 too): a batch copy of `jobs` on SQLite would drop
    # the table, and its ON DELETE CASCADE would empty every table that refers to it.
    for column in ("device_pool", "devices"):
        op.execute(f"ALTER TABLE workers DROP COLUMN {column}")
    for column in ("device_ids", "device_pool", "devices"):
        op.execute(f"ALTER TABLE jobs DROP COLUMN {column}")
