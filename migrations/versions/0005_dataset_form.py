"""datasets.form: the graph form a dataset's latencies are of

Campaigns before this revision exported the pruned form; imports did not say (NULL: unknown).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("form", sa.String(length=16), nullable=True))
    op.execute("UPDATE datasets SET form = 'pruned' WHERE source = 'campaign'")


def downgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("form")
