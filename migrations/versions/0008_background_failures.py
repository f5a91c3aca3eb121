"""Background work that fails: dataset_archs.error and .failures, luts.failures

A campaign arch that cannot be exported or stored is failed with its reason (error) and the
campaign moves on; an unexpected error is counted (failures) and fails the arch or LUT on the
third. Rows from before this revision have no error and no failures.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("dataset_archs", sa.Column("error", sa.Text(), nullable=True))
    for table in ("dataset_archs", "luts"):
        op.add_column(
            table, sa.Column("failures", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    # not batches: SQLite's copy-and-move would trip the foreign keys that point at them
    for table in ("dataset_archs", "luts"):
        op.drop_column(table, "failures")
    op.drop_column("dataset_archs", "error")
