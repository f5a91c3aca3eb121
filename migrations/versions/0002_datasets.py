"""datasets

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("source", sa.String(length=16), server_default="agent", nullable=False)
        )
    op.create_table(
        "datasets",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("space", sa.String(length=50), nullable=False),
        sa.Column("space_params", JSON, nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("config", JSON, nullable=True),
        sa.Column("provenance", JSON, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_datasets")),
    )
    op.create_table(
        "dataset_archs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("dataset_id", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("arch", sa.String(length=1000), nullable=False),
        sa.Column("arch_index", sa.String(length=40), nullable=False),
        sa.Column("model_id", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name=op.f("fk_dataset_archs_dataset_id_datasets"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name=op.f("fk_dataset_archs_model_id_models")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dataset_archs")),
    )
    with op.batch_alter_table("dataset_archs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_dataset_archs_dataset_id"), ["dataset_id"], unique=False
        )
        batch_op.create_index("uq_dataset_archs_dataset_arch", ["dataset_id", "arch"], unique=True)

    op.create_table(
        "dataset_entries",
        sa.Column("dataset_arch_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=True),
        sa.Column("measurement_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["dataset_arch_id"],
            ["dataset_archs.id"],
            name=op.f("fk_dataset_entries_dataset_arch_id_dataset_archs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_dataset_entries_device_id_devices")
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_dataset_entries_job_id_jobs")
        ),
        sa.ForeignKeyConstraint(
            ["measurement_id"],
            ["measurements.id"],
            name=op.f("fk_dataset_entries_measurement_id_measurements"),
        ),
        sa.PrimaryKeyConstraint("dataset_arch_id", "device_id", name=op.f("pk_dataset_entries")),
    )
    with op.batch_alter_table("dataset_entries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dataset_entries_job_id"), ["job_id"], unique=False)

    with op.batch_alter_table("measurements", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("source", sa.String(length=16), server_default="measured", nullable=False)
        )
        batch_op.add_column(sa.Column("provenance", JSON, nullable=True))
        batch_op.alter_column("job_id", existing_type=sa.VARCHAR(length=32), nullable=True)
        batch_op.alter_column("model_id", existing_type=sa.VARCHAR(length=64), nullable=True)
        batch_op.alter_column("mean_ms", existing_type=sa.FLOAT(), nullable=True)
        batch_op.alter_column("std_ms", existing_type=sa.FLOAT(), nullable=True)
        batch_op.alter_column("min_ms", existing_type=sa.FLOAT(), nullable=True)
        batch_op.alter_column("max_ms", existing_type=sa.FLOAT(), nullable=True)
        batch_op.alter_column("p10_ms", existing_type=sa.FLOAT(), nullable=True)
        batch_op.alter_column("p90_ms", existing_type=sa.FLOAT(), nullable=True)
        batch_op.alter_column("p99_ms", existing_type=sa.FLOAT(), nullable=True)
        batch_op.alter_column("iqr_ms", existing_type=sa.FLOAT(), nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("measurements", schema=None) as batch_op:
        batch_op.alter_column("iqr_ms", existing_type=sa.FLOAT(), nullable=False)
        batch_op.alter_column("p99_ms", existing_type=sa.FLOAT(), nullable=False)
        batch_op.alter_column("p90_ms", existing_type=sa.FLOAT(), nullable=False)
        batch_op.alter_column("p10_ms", existing_type=sa.FLOAT(), nullable=False)
        batch_op.alter_column("max_ms", existing_type=sa.FLOAT(), nullable=False)
        batch_op.alter_column("min_ms", existing_type=sa.FLOAT(), nullable=False)
        batch_op.alter_column("std_ms", existing_type=sa.FLOAT(), nullable=False)
        batch_op.alter_column("mean_ms", existing_type=sa.FLOAT(), nullable=False)
        batch_op.alter_column("model_id", existing_type=sa.VARCHAR(length=64), nullable=False)
        batch_op.alter_column("job_id", existing_type=sa.VARCHAR(length=32), nullable=False)
        batch_op.drop_column("provenance")
        batch_op.drop_column("source")

    with op.batch_alter_table("dataset_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dataset_entries_job_id"))

    op.drop_table("dataset_entries")
    with op.batch_alter_table("dataset_archs", schema=None) as batch_op:
        batch_op.drop_index("uq_dataset_archs_dataset_arch")
        batch_op.drop_index(batch_op.f("ix_dataset_archs_dataset_id"))

    op.drop_table("dataset_archs")
    op.drop_table("datasets")
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_column("source")
