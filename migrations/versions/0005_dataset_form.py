"""datasets.form: the graph form a dataset's latencies are of; NAS-Bench-201's own index

Campaigns before this revision exported the pruned form; imports did not say (NULL: unknown).
NAS-Bench-201 rows kept the index of the base-5 enumeration of the edge ops; their index is
renumbered to the benchmark's own (the shuffled ``gen_all`` order) from the stored cell string,
which stays what it was (downgrade: back to the base-5 index).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op

from latlab.spaces.nb201 import Nb201, Nb201Arch

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("datasets", sa.Column("form", sa.String(length=16), nullable=True))
    op.execute("UPDATE datasets SET form = 'pruned' WHERE source = 'campaign'")
    _renumber_nb201(lambda arch: arch.index)


def downgrade() -> None:
    _renumber_nb201(lambda arch: arch.enum_index)
    # not a batch: SQLite's copy-and-move of the table would cascade-delete its dataset_archs
    # (SQLite has had DROP COLUMN since 3.35)
    op.drop_column("datasets", "form")


def _renumber_nb201(index: Callable[[Nb201Arch], int]) -> None:
    conn = op.get_bind()
    rows = conn.execute(
        sa.text(
            "SELECT a.id, a.arch FROM dataset_archs a JOIN datasets d ON d.id = a.dataset_id "
            "WHERE d.space = 'nb201'"
        )
    ).all()
    space = Nb201()
    updates = [{"id": row.id, "index": str(index(space.parse(row.arch)))} for row in rows]
    if updates:
        conn.execute(
            sa.text("UPDATE dataset_archs SET arch_index = :index WHERE id = :id"), updates
        )
