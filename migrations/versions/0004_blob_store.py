"""one blob store: checkpoint, model export and dataset chunks move into blob_chunks (issue 22)

Revision ID: b10b5c000004
Revises: a0c3e1000003

Every existing chunk row is copied as it is (same bytes, same order) into the one chunk
table, with its owner and its team, and the three tables are dropped. Downgrade copies
them back.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "b10b5c000004"
down_revision = "a0c3e1000003"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
ONE_OWNER = (
    "(owner = 'checkpoint' AND checkpoint_id IS NOT NULL"
    " AND model_export_job_id IS NULL AND dataset_id IS NULL)"
    " OR (owner = 'model_export' AND model_export_job_id IS NOT NULL"
    " AND checkpoint_id IS NULL AND dataset_id IS NULL)"
    " OR (owner = 'dataset' AND dataset_id IS NOT NULL"
    " AND checkpoint_id IS NULL AND model_export_job_id IS NULL)"
)

MOVE_IN = [
    """INSERT INTO blob_chunks (team_id, owner, checkpoint_id, file, seq, data)
       SELECT j.team_id, 'checkpoint', c.checkpoint_id, c.kind, c.seq, c.data
       FROM checkpoint_chunks c
       JOIN checkpoints k ON k.id = c.checkpoint_id
       JOIN jobs j ON j.id = k.job_id
       ORDER BY c.checkpoint_id, c.kind, c.seq""",
    """INSERT INTO blob_chunks (team_id, owner, model_export_job_id, file, seq, data)
       SELECT j.team_id, 'model_export', c.job_id, c.kind, c.seq, c.data
       FROM model_export_chunks c
       JOIN jobs j ON j.id = c.job_id
       ORDER BY c.job_id, c.kind, c.seq""",
    """INSERT INTO blob_chunks (team_id, owner, dataset_id, file, seq, data)
       SELECT d.team_id, 'dataset', c.dataset_id, 'content', c.seq, c.data
       FROM dataset_chunks c
       JOIN datasets d ON d.id = c.dataset_id
       ORDER BY c.dataset_id, c.seq""",
]

MOVE_OUT = [
    """INSERT INTO checkpoint_chunks (checkpoint_id, kind, seq, data)
       SELECT checkpoint_id, file, seq, data FROM blob_chunks WHERE owner = 'checkpoint'""",
    """INSERT INTO model_export_chunks (job_id, kind, seq, data)
       SELECT model_export_job_id, file, seq, data FROM blob_chunks
       WHERE owner = 'model_export'""",
    """INSERT INTO dataset_chunks (dataset_id, seq, data)
       SELECT dataset_id, seq, data FROM blob_chunks WHERE owner = 'dataset'""",
]


def upgrade() -> None:
    op.create_table(
        "blob_chunks",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("team_id", sa.String(length=32), nullable=False),
        sa.Column("owner", sa.String(length=16), nullable=False),
        sa.Column("checkpoint_id", BIG_ID, nullable=True),
        sa.Column("model_export_job_id", sa.String(length=32), nullable=True),
        sa.Column("dataset_id", sa.String(length=32), nullable=True),
        sa.Column("file", sa.String(length=8), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.CheckConstraint(ONE_OWNER, name="ck_blob_chunks_one_owner"),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"]),
        sa.ForeignKeyConstraint(["checkpoint_id"], ["checkpoints.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["model_export_job_id"], ["model_exports.job_id"], ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    for name, column in (
        ("checkpoint", "checkpoint_id"),
        ("model_export", "model_export_job_id"),
        ("dataset", "dataset_id"),
    ):
        op.create_index(
            f"uq_blob_chunks_{name}", "blob_chunks", [column, "file", "seq"], unique=True
        )
    op.create_index("ix_blob_chunks_team_owner", "blob_chunks", ["team_id", "owner"])
    for statement in MOVE_IN:
        op.execute(statement)
    op.drop_table("checkpoint_chunks")
    op.drop_table("model_export_chunks")
    op.drop_table("dataset_chunks")


def downgrade() -> None:
    op.create_table(
        "checkpoint_chunks",
        sa.Column("checkpoint_id", BIG_ID, nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["checkpoint_id"], ["checkpoints.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("checkpoint_id", "kind", "seq"),
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
    op.create_table(
        "dataset_chunks",
        sa.Column("dataset_id", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("dataset_id", "seq"),
    )
    for statement in MOVE_OUT:
        op.execute(statement)
    op.drop_table("blob_chunks")
