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
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.drop_column("device_pool")
        batch_op.drop_column("devices")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("device_ids")
        batch_op.drop_column("device_pool")
        batch_op.drop_column("devices")
