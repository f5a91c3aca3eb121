"""Index dataset_entries.measurement_id

Deleting an imported dataset deletes its measurements: each deleted row's foreign-key check,
and the test that no other entry points at it, look entries up by ``measurement_id``. Without
an index each was a scan of every entry (a 15,625-row import took 53 s to delete on SQLite).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_dataset_entries_measurement_id"


def upgrade() -> None:
    op.create_index(INDEX, "dataset_entries", ["measurement_id"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="dataset_entries")
