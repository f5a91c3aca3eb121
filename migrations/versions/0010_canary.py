"""The device canary: jobs.purpose, measurements.purpose, dataset_entries.remeasured

A canary job times the device's reference model between its other jobs (server/canary.py);
its measurement carries the purpose too, and an index finds a device's last canary and the
measurements since it. A campaign entry measured again because the canary drifted around it
counts it in ``remeasured``. Rows from before this revision are "measure" and 0.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PURPOSE = "ix_measurements_device_identity_purpose"
JOBS = "ix_jobs_device_purpose"
OLD = "ix_measurements_device_runtime_identity"


def upgrade() -> None:
    for table in ("jobs", "measurements"):
        op.add_column(
            table,
            sa.Column("purpose", sa.String(length=16), nullable=False, server_default="measure"),
        )
    op.add_column(
        "dataset_entries",
        sa.Column("remeasured", sa.Integer(), nullable=False, server_default="0"),
    )
    op.create_index(JOBS, "jobs", ["device_id", "purpose", "runtime_identity", "created_at"])
    op.drop_index(OLD, table_name="measurements")
    op.create_index(
        PURPOSE,
        "measurements",
        ["device_id", "runtime_identity", "purpose", "created_at"],
    )


def downgrade() -> None:
    op.drop_index(PURPOSE, table_name="measurements")
    op.drop_index(JOBS, table_name="jobs")
    op.create_index(OLD, "measurements", ["device_id", "runtime_identity"])
    # not batches: SQLite's copy-and-move would trip the foreign keys that point at them
    op.drop_column("dataset_entries", "remeasured")
    for table in ("measurements", "jobs"):
        op.drop_column(table, "purpose")
