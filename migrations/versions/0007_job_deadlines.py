"""A job's deadline: jobs.deadline_at, set when a device leases the job

The server refuses a result that arrives after it and fails the job; its reaper fails a
leased job whose deadline has passed (an agent that keeps the lease alive but never finishes).
Jobs leased before this revision have none (NULL): only their lease expiry applies.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    # not a batch: SQLite's copy-and-move of jobs would trip the foreign keys that point at it
    # (SQLite has had DROP COLUMN since 3.35)
    op.drop_column("jobs", "deadline_at")
