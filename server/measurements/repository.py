"""The measurement tables in Core SQL: an upload is two inserts, and a list of 10,000 rows
builds no ORM objects. Rows come back as mappings keyed by column name
(``mapping.py`` turns them into wire models)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, delete, exists, func, insert, or_, select
from sqlalchemy.orm import Session

from latlab.schemas import MeasurementSource
from latlab.server.db import affected, in_chunks
from latlab.server.tables import DatasetEntry, Job, Measurement, OpMeasurement, core_table

__all__ = [
    "Removed",
    "by_id",
    "by_job",
    "delete_of_jobs",
    "delete_of_model",
    "delete_unshared_imports",
    "insert_measurement",
    "insert_ops",
    "listed",
    "ops_of",
]

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


def _where(
    model_id: str | None, device_id: str | None, job_id: str | None
) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if model_id is not None:
        where.append(measurements.c.model_id == model_id)
    if device_id is not None:
        where.append(measurements.c.device_id == device_id)
    if job_id is not None:
        where.append(measurements.c.job_id == job_id)
    return where


def listed(
    session: Session,
    *,
    model_id: str | None,
    device_id: str | None,
    job_id: str | None,
    limit: int,
    offset: int,
    newest_first: bool = False,
) -> Sequence[Row]:
    """Oldest first (or newest first)."""
    order = measurements.c.id.desc() if newest_first else measurements.c.id
    query = (
        select(measurements)
        .where(*_where(model_id, device_id, job_id))
        .order_by(order)
        .limit(limit)
        .offset(offset)
    )
    return session.execute(query).mappings().all()


def counted(
    session: Session, *, model_id: str | None, device_id: str | None, job_id: str | None
) -> int:
    """How many measurements ``listed`` pages through."""
    query = (
        select(func.count()).select_from(measurements).where(*_where(model_id, device_id, job_id))
    )
    return int(session.scalar(query) or 0)


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


# --------------------------------------------------------------------------- deletes

_jobs = core_table(Job)
_entries = core_table(DatasetEntry)


@dataclass(frozen=True)
class Removed:
    """Measurements deleted and their per-op rows."""

    measurements: int = 0
    op_measurements: int = 0

    def __add__(self, other: Removed) -> Removed:
        return Removed(
            self.measurements + other.measurements, self.op_measurements + other.op_measurements
        )


def _delete(session: Session, where: ColumnElement[bool]) -> Removed:
    ops = delete(op_measurements).where(
        op_measurements.c.measurement_id.in_(select(measurements.c.id).where(where))
    )
    n_ops = affected(session.execute(ops))
    return Removed(affected(session.execute(delete(measurements).where(where))), n_ops)


def delete_of_jobs(session: Session, job_ids: Sequence[str]) -> Removed:
    """Delete the measurements of these jobs, with their per-op rows."""
    removed = Removed()
    for chunk in in_chunks(sorted(set(job_ids))):
        removed += _delete(session, measurements.c.job_id.in_(chunk))
    return removed


def delete_of_model(session: Session, model_id: str) -> Removed:
    """Delete the model's measurements (and any of its jobs'), with their per-op rows."""
    of_jobs = select(_jobs.c.id).where(_jobs.c.model_id == model_id)
    return _delete(
        session, or_(measurements.c.model_id == model_id, measurements.c.job_id.in_(of_jobs))
    )


def delete_unshared_imports(session: Session, measurement_ids: Sequence[int]) -> Removed:
    """Delete the imported measurements among these that no dataset entry points at (any
    more), with their per-op rows; measured ones are never touched."""
    removed = Removed()
    for chunk in in_chunks(sorted(set(measurement_ids))):
        removed += _delete(
            session,
            measurements.c.id.in_(chunk)
            & (measurements.c.source == MeasurementSource.imported.value)
            & ~exists().where(_entries.c.measurement_id == measurements.c.id),
        )
    return removed
