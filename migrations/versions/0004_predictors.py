"""predictors

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "predictors",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("runtime", sa.String(length=100), nullable=False),
        sa.Column("space", sa.String(length=50), nullable=True),
        sa.Column("space_params", JSON, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("current", sa.Boolean(), nullable=False),
        sa.Column("training", JSON, nullable=False),
        sa.Column("metrics", JSON, nullable=False),
        sa.Column("artifact_sha256", sa.String(length=64), nullable=False),
        sa.Column("artifact_bytes", sa.BigInteger(), nullable=False),
        sa.Column("plot_sha256", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_predictors_device_id_devices")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_predictors")),
    )
    with op.batch_alter_table("predictors", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_predictors_device_id"), ["device_id"], unique=False)
        batch_op.create_index(
            "uq_predictors_device_runtime_version", ["device_id", "runtime", "version"], unique=True
        )


def downgrade() -> None:
    with op.batch_alter_table("predictors", schema=None) as batch_op:
        batch_op.drop_index("uq_predictors_device_runtime_version")
        batch_op.drop_index(batch_op.f("ix_predictors_device_id"))
    op.drop_table("predictors")
