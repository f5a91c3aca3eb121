"""Measurement quality: measurements.verdict, verdict_rule, ci_low_ms, ci_high_ms,
ci_halfwidth_pct, cv_pct, drift_pct

latlab.quality's assessment of each measured row. Rows measured before this revision are
assessed here from their stored samples and host report (the same function the server uses for
new results); imported rows have none (NULL).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from latlab.quality import assess, measurement_quality

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FLOATS = ("ci_low_ms", "ci_high_ms", "ci_halfwidth_pct", "cv_pct", "drift_pct")
BATCH = 1000


def upgrade() -> None:
    op.add_column("measurements", sa.Column("verdict", sa.String(length=16), nullable=True))
    op.add_column("measurements", sa.Column("verdict_rule", sa.String(length=300), nullable=True))
    for name in FLOATS:
        op.add_column("measurements", sa.Column(name, sa.Float(), nullable=True))
    _assess_measured_rows()


def downgrade() -> None:
    # not batches: SQLite's copy-and-move would trip the foreign keys that point at it
    for name in (*FLOATS, "verdict_rule", "verdict"):
        op.drop_column("measurements", name)


def _decoded(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _assess_measured_rows() -> None:
    conn = op.get_bind()
    last = 0
    while True:
        rows = conn.execute(
            sa.text(
                "SELECT id, samples_ms, provenance FROM measurements "
                "WHERE source = 'measured' AND id > :last ORDER BY id LIMIT :n"
            ),
            {"last": last, "n": BATCH},
        ).all()
        if not rows:
            return
        updates = []
        for row in rows:
            samples = _decoded(row.samples_ms) or []
            host = (_decoded(row.provenance) or {}).get("host")
            quality = measurement_quality(assess(samples, host if isinstance(host, dict) else None))
            updates.append({"id": row.id, **quality.model_dump()})
        conn.execute(
            sa.text(
                "UPDATE measurements SET verdict = :verdict, verdict_rule = :verdict_rule, "
                + ", ".join(f"{name} = :{name}" for name in FLOATS)
                + " WHERE id = :id"
            ),
            updates,
        )
        last = rows[-1].id
