"""model exports: a job's ONNX bundle and graph, chunked like checkpoints (issue 14)

Revision ID: b2e7a0c10002
Revises: 3295140b53bf
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import api.db.models

revision = "b2e7a0c10002"
down_revision = "3295140b53bf"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_exports",
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("model_metadata", sa.JSON(), nullable=True),
        sa.Column("bundle_bytes", sa.BigInteger(), nullable=False),
        sa.Column("bundle_sha256", sa.String(length=64), nullable=True),
        sa.Column("onnx_bytes", sa.BigInteger(), nullable=False),
        sa.Column("onnx_sha256", sa.String(length=64), nullable=True),
        sa.Column("created_at", api.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id"),
    )
    op.create_table(
        "model_export_chunks",
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["model_exports.job_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "kind", "seq"),
    )


def downgrade() -> None:
    op.drop_table("model_export_chunks")
    op.drop_table("model_exports")
