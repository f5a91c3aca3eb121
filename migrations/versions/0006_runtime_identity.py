"""The runtime identity in columns: jobs.runtime, jobs.provider, jobs.runtime_identity and
measurements.runtime_identity, filled from the stored configs

A claim matches a job's runtime and provider to the device's in SQL, and a LUT finds the
measurements of one runtime identity with an index instead of reading every stored config.
A config whose runtime's plug-in is not installed while migrating gets the provider
``unknown`` (no device matches it; re-create such a job once the plug-in is back).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from latlab.runtimes import stored_config

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JOB_COLUMNS = ("runtime", "provider", "runtime_identity")


def upgrade() -> None:
    # NOT NULL from the start with an empty default while they are filled (SQLite cannot
    # ALTER a column, and a batch copy of jobs would trip the foreign keys that point at it);
    # PostgreSQL then drops the default, SQLite keeps it (latlab always writes the columns)
    for column, length in zip(JOB_COLUMNS, (100, 100, 64), strict=True):
        op.add_column(
            "jobs",
            sa.Column(column, sa.String(length=length), nullable=False, server_default=""),
        )
    op.add_column(
        "measurements", sa.Column("runtime_identity", sa.String(length=64), nullable=True)
    )
    conn = op.get_bind()
    jobs = conn.execute(sa.text("SELECT id, config FROM jobs")).all()
    if jobs:
        conn.execute(
            sa.text(
                "UPDATE jobs SET runtime = :runtime, provider = :provider, "
                "runtime_identity = :identity WHERE id = :id"
            ),
            [{"id": row.id, **_identity(row.config)} for row in jobs],
        )
    measured = conn.execute(
        sa.text("SELECT id, config FROM measurements WHERE job_id IS NOT NULL")
    ).all()
    if measured:
        conn.execute(
            sa.text("UPDATE measurements SET runtime_identity = :identity WHERE id = :id"),
            [{"id": row.id, "identity": _identity(row.config)["identity"]} for row in measured],
        )
    if conn.dialect.name == "postgresql":
        for column in JOB_COLUMNS:
            op.alter_column("jobs", column, server_default=None)
    op.create_index(
        "ix_measurements_device_runtime_identity",
        "measurements",
        ["device_id", "runtime_identity"],
    )


def downgrade() -> None:
    op.drop_index("ix_measurements_device_runtime_identity", table_name="measurements")
    # not batches: SQLite's copy-and-move of measurements would cascade-delete its op rows
    # (SQLite has had DROP COLUMN since 3.35)
    op.drop_column("measurements", "runtime_identity")
    for column in reversed(JOB_COLUMNS):
        op.drop_column("jobs", column)


def _identity(config: object) -> dict[str, str]:
    if isinstance(config, str):  # SQLite's JSON reads back as text through sa.text
        config = json.loads(config)
    assert isinstance(config, dict)
    stored = stored_config(config)
    return {
        "runtime": stored.runtime,
        "provider": stored.provider,
        "identity": stored.identity_key(),
    }
