"""The canary's SQL: a device's last canary job, the measurements since, the series."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, func, select
from sqlalchemy.orm import Session

from latlab.schemas import CanaryPoint, JobPurpose
from latlab.server.tables import Job, Measurement, core_table

__all__ = ["around", "last_canary_job", "measured_since", "series"]

jobs = core_table(Job)
measurements = core_table(Measurement)
CANARY, MEASURE = JobPurpose.canary.value, JobPurpose.measure.value

_LAST_CANARY_JOB = (
    select(jobs.c.created_at, jobs.c.finished_at)
    .where(
        jobs.c.device_id == bindparam("device_id"),
        jobs.c.purpose == CANARY,
        jobs.c.runtime_identity == bindparam("identity"),
    )
    .order_by(jobs.c.created_at.desc())
    .limit(1)
)
_MEASURED_SINCE = select(func.count()).select_from(
    select(measurements.c.id)
    .where(
        measurements.c.device_id == bindparam("device_id"),
        measurements.c.runtime_identity == bindparam("identity"),
        measurements.c.purpose == MEASURE,
        measurements.c.created_at > bindparam("since"),
    )
    .limit(bindparam("cap"))
    .subquery()
)


def last_canary_job(
    session: Session, device_id: str, identity: str
) -> Row[*tuple[Any, ...]] | None:
    """The device's latest canary job with this runtime identity: created, finished (None
    while it is pending)."""
    return session.execute(_LAST_CANARY_JOB, {"device_id": device_id, "identity": identity}).first()


def measured_since(
    session: Session, device_id: str, identity: str, since: datetime, cap: int
) -> int:
    """The device's measurements (not canaries) with this identity after ``since``, up to
    ``cap`` (counted no further)."""
    params = {"device_id": device_id, "identity": identity, "since": since, "cap": cap}
    return int(session.execute(_MEASURED_SINCE, params).scalar_one())


#: CanaryPoint's fields, by name.
_SERIES_COLUMNS = (
    measurements.c.id.label("measurement_id"),
    measurements.c.job_id,
    measurements.c.model_id,
    measurements.c.created_at.label("measured_at"),
    measurements.c.median_ms,
    measurements.c.ci_low_ms,
    measurements.c.ci_high_ms,
    measurements.c.verdict,
    measurements.c.runtime,
    measurements.c.provider,
    measurements.c.threads,
    measurements.c.runtime_identity,
)


def series(
    session: Session,
    device_id: str,
    *,
    runtime_identity: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 1000,
) -> list[CanaryPoint]:
    """The device's canary measurements, oldest first (the latest ``limit``)."""
    query = select(*_SERIES_COLUMNS).where(
        measurements.c.device_id == device_id, measurements.c.purpose == CANARY
    )
    if runtime_identity is not None:
        query = query.where(measurements.c.runtime_identity == runtime_identity)
    if since is not None:
        query = query.where(measurements.c.created_at >= since)
    if until is not None:
        query = query.where(measurements.c.created_at <= until)
    rows = session.execute(query.order_by(measurements.c.created_at.desc()).limit(limit)).all()
    return [_point(row) for row in reversed(rows)]


def _point(row: Row[*tuple[Any, ...]]) -> CanaryPoint:
    return CanaryPoint.model_validate(row._mapping)


def around(
    session: Session, device_id: str, identity: str, first: datetime, last: datetime
) -> list[CanaryPoint]:
    """The device's canaries with ``identity`` that bound measurements taken from ``first``
    to ``last``: the last one at or before ``first``, those between, the first one after."""

    def one(where: Any, order: Any) -> list[CanaryPoint]:
        query = select(*_SERIES_COLUMNS).where(
            measurements.c.device_id == device_id,
            measurements.c.runtime_identity == identity,
            measurements.c.purpose == CANARY,
            where,
        )
        return [_point(r) for r in session.execute(query.order_by(order).limit(1))]

    at = measurements.c.created_at
    before = one(at <= first, at.desc())
    after = one(at > last, at)
    between = series(
        session, device_id, runtime_identity=identity, since=first, until=last, limit=1_000_000
    )
    between = [p for p in between if p.measured_at > first]
    return [*before, *between, *after]
