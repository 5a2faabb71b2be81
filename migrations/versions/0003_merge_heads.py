"""one line from here on: merges the five 0002 heads built side by side (issue 22)

Revision ID: a0c3e1000003
Revises: f6b18d000002, b2e7a0c10002, d4f15ab00002, c3d17e000002, e5a13c000002

Every later migration revises this one (or its successor), so ``alembic heads``
shows one head. Databases already at the five heads upgrade to it with no change
to their tables.
"""

from __future__ import annotations

revision = "a0c3e1000003"
down_revision = ("f6b18d000002", "b2e7a0c10002", "d4f15ab00002", "c3d17e000002", "e5a13c000002")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
