"""lookup tables

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "luts",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("rules", sa.String(length=50), nullable=False),
        sa.Column("config", JSON, nullable=False),
        sa.Column("spec", JSON, nullable=False),
        sa.Column("space", sa.String(length=50), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("table", JSON, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("built_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_luts_device_id_devices")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_luts")),
    )
    with op.batch_alter_table("luts", schema=None) as batch_op:
        batch_op.create_index("ix_luts_device_state", ["device_id", "state"], unique=False)

    op.create_table(
        "lut_kernels",
        sa.Column("lut_id", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=1000), nullable=False),
        sa.Column("op_type", sa.String(length=200), nullable=False),
        sa.Column("anchor", sa.String(length=1000), nullable=False),
        sa.Column("flops", sa.BigInteger(), nullable=False),
        sa.Column("bytes_moved", sa.BigInteger(), nullable=False),
        sa.Column("model_id", sa.String(length=64), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_lut_kernels_job_id_jobs")),
        sa.ForeignKeyConstraint(
            ["lut_id"], ["luts.id"], name=op.f("fk_lut_kernels_lut_id_luts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name=op.f("fk_lut_kernels_model_id_models")
        ),
        sa.PrimaryKeyConstraint("lut_id", "key", name=op.f("pk_lut_kernels")),
    )
    with op.batch_alter_table("lut_kernels", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lut_kernels_job_id"), ["job_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_lut_kernels_model_id"), ["model_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("lut_kernels", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lut_kernels_model_id"))
        batch_op.drop_index(batch_op.f("ix_lut_kernels_job_id"))
    op.drop_table("lut_kernels")
    with op.batch_alter_table("luts", schema=None) as batch_op:
        batch_op.drop_index("ix_luts_device_state")
    op.drop_table("luts")
