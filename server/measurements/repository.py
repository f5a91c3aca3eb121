"""The measurement tables in Core SQL: an upload is two inserts, and a list of 10,000 rows
builds no ORM objects. Rows come back as mappings keyed by column name
(``mapping.py`` turns them into wire models)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, insert, select
from sqlalchemy.orm import Session

from latlab.server.tables import Measurement, OpMeasurement, core_table

__all__ = ["by_id", "by_job", "insert_measurement", "insert_ops", "listed", "ops_of"]

Row = Mapping[Any, Any]

measurements = core_table(Measurement)
op_measurements = core_table(OpMeasurement)
_INSERT = insert(measurements).returning(measurements.c.id)
_INSERT_OPS = insert(op_measurements)


def insert_measurement(session: Session, row: Mapping[str, Any]) -> int:
    """Insert the measurement; its id."""
    measurement_id: int = session.execute(_INSERT, row).scalar_one()
    return measurement_id


def insert_ops(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    if rows:
        session.execute(_INSERT_OPS, rows)


def _one(session: Session, where: ColumnElement[bool]) -> Row | None:
    return session.execute(select(measurements).where(where)).mappings().first()


def by_id(session: Session, measurement_id: int) -> Row | None:
    return _one(session, measurements.c.id == measurement_id)


def by_job(session: Session, job_id: str) -> Row | None:
    return _one(session, measurements.c.job_id == job_id)


def listed(
    session: Session,
    *,
    model_id: str | None,
    device_id: str | None,
    job_id: str | None,
    limit: int,
    offset: int,
) -> Sequence[Row]:
    """Oldest first."""
    query = select(measurements)
    if model_id is not None:
        query = query.where(measurements.c.model_id == model_id)
    if device_id is not None:
        query = query.where(measurements.c.device_id == device_id)
    if job_id is not None:
        query = query.where(measurements.c.job_id == job_id)
    query = query.order_by(measurements.c.id).limit(limit).offset(offset)
    return session.execute(query).mappings().all()


def ops_of(session: Session, ids: Sequence[int]) -> dict[int, list[Row]]:
    """The per-op rows of these measurements, in execution order."""
    out: dict[int, list[Row]] = defaultdict(list)
    if not ids:
        return out
    query = (
        select(op_measurements)
        .where(op_measurements.c.measurement_id.in_(ids))
        .order_by(op_measurements.c.measurement_id, op_measurements.c.seq)
    )
    for op in session.execute(query).mappings():
        out[op["measurement_id"]].append(op)
    return out
