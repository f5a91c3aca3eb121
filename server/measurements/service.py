"""Measurements: results stored once per job (idempotent by job + lease), and queried.

The rows are read and written in Core SQL (``latlab.server.measurements.mapping`` maps them to the
wire models by field name): an upload is one locked read of its job, two inserts and one
update, and a list of 10,000 rows builds no ORM objects.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, insert, select
from sqlalchemy.orm import Session

from latlab.schemas import JobState, MeasurementIn, MeasurementOut, MeasurementSource
from latlab.server.db import utcnow
from latlab.server.errors import InvalidInput, NotFound
from latlab.server.jobs import repository as jobs
from latlab.server.jobs.service import is_repeat, live_lease, locked_job
from latlab.server.measurements.mapping import measurement_out, op_values, row_values
from latlab.server.tables import Measurement, OpMeasurement, core_table
from latlab.stats import REPORTED_HEADLINE, latency_stats, reported_latency_stats

__all__ = ["get_measurement", "list_measurements", "store_result"]

log = logging.getLogger(__name__)

measurements = core_table(Measurement)
op_measurements = core_table(OpMeasurement)
_INSERT = insert(measurements).returning(measurements.c.id)
_INSERT_OPS = insert(op_measurements)


def store_result(
    session: Session, device_id: str, job_id: str, body: MeasurementIn
) -> tuple[MeasurementOut, bool]:
    """Store the agent's result and finish the job: (the stored measurement without samples
    and ops, created). A repeat of a stored result is a no-op."""
    job = locked_job(session, job_id)
    if is_repeat(job, JobState.done, device_id, body.lease_token):
        stored = measurements.c.job_id == job_id
        missing = f"job {job_id} has no measurement"
        return _one(session, stored, missing, samples=False, ops=False), False
    live_lease(job, device_id, body.lease_token)
    provenance = dict(body.provenance or {})
    if body.reported is not None:
        stats = reported_latency_stats(body.reported)
        provenance["headline"] = REPORTED_HEADLINE
        provenance["reported"] = body.reported.model_dump()
    else:
        try:
            stats = latency_stats(body.samples_ms)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from exc
    now = utcnow()
    row = {
        **row_values(body, stats),
        "job_id": job.id,
        "source": MeasurementSource.measured.value,
        "model_id": job.model_id,
        "device_id": device_id,
        "provenance": provenance or None,
        "config": job.config,
        "runtime_identity": job.runtime_identity,
        "created_at": now,
    }
    row["id"] = session.execute(_INSERT, row).scalar_one()
    if body.ops:
        session.execute(_INSERT_OPS, op_values(row["id"], body.ops))
    jobs.finish(session, job.id, JobState.done, None, now)
    log.info("measurement stored", extra={"job_id": job.id, "device_id": device_id})
    return measurement_out(row, samples=False), True


def _one(
    session: Session, where: ColumnElement[bool], missing: str, *, samples: bool, ops: bool
) -> MeasurementOut:
    row = session.execute(select(measurements).where(where)).mappings().first()
    if row is None:
        raise NotFound(missing)
    return measurement_out(
        row, _ops(session, [row["id"]])[row["id"]] if ops else None, samples=samples
    )


def get_measurement(session: Session, measurement_id: int) -> MeasurementOut:
    """One measurement with its raw samples and per-op rows."""
    where = measurements.c.id == measurement_id
    return _one(session, where, f"no measurement {measurement_id}", samples=True, ops=True)


def list_measurements(
    session: Session,
    *,
    model_id: str | None = None,
    device_id: str | None = None,
    job_id: str | None = None,
    samples: bool = False,
    ops: bool = False,
    limit: int = 100,
    offset: int = 0,
) -> list[MeasurementOut]:
    query = select(measurements)
    if model_id is not None:
        query = query.where(measurements.c.model_id == model_id)
    if device_id is not None:
        query = query.where(measurements.c.device_id == device_id)
    if job_id is not None:
        query = query.where(measurements.c.job_id == job_id)
    query = query.order_by(measurements.c.id).limit(limit).offset(offset)
    rows = session.execute(query).mappings().all()
    by_id = _ops(session, [r["id"] for r in rows]) if ops else {}
    return [
        measurement_out(r, by_id.get(r["id"], []) if ops else None, samples=samples) for r in rows
    ]


def _ops(session: Session, ids: Sequence[int]) -> dict[int, list[Mapping[Any, Any]]]:
    """The per-op rows of these measurements, in execution order."""
    out: dict[int, list[Mapping[Any, Any]]] = defaultdict(list)
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
