"""Measurements: results stored once per job (idempotent by job + lease), and queried.

The rows are read and written in Core SQL (``repository.py``; ``mapping.py`` maps them to the
wire models by field name): an upload is one locked read of its job, two inserts and one
update, and a list of 10,000 rows builds no ORM objects.
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from latlab.quality import assess, measurement_quality
from latlab.schemas import JobState, MeasurementIn, MeasurementOut, MeasurementSource
from latlab.server.db import utcnow
from latlab.server.errors import DeadlinePassed, InvalidInput, NotFound
from latlab.server.jobs import repository as jobs
from latlab.server.jobs.service import is_repeat, live_lease, locked_job, missed_deadline
from latlab.server.measurements import repository
from latlab.server.measurements.mapping import measurement_out, op_values, row_values
from latlab.stats import REPORTED_HEADLINE, latency_stats, reported_latency_stats

__all__ = ["get_measurement", "list_measurements", "store_result"]

log = logging.getLogger(__name__)


def store_result(
    session: Session, device_id: str, job_id: str, body: MeasurementIn
) -> tuple[MeasurementOut, bool]:
    """Store the agent's result and finish the job: (the stored measurement without samples
    and ops, created). A repeat of a stored result is a no-op; a result after the job's
    deadline is ``DeadlinePassed``."""
    job = locked_job(session, job_id)
    if is_repeat(job, JobState.done, device_id, body.lease_token):
        stored = repository.by_job(session, job_id)
        if stored is None:
            raise NotFound(f"job {job_id} has no measurement")
        return measurement_out(stored, samples=False), False
    live_lease(job, device_id, body.lease_token)
    missed = missed_deadline(job, utcnow())
    if missed is not None:  # the endpoint fails the job (this transaction is rolled back)
        raise DeadlinePassed(f"job {job_id}: {missed}; the result is refused")
    provenance = dict(body.provenance or {})
    host = provenance.get("host")
    host = host if isinstance(host, dict) else None
    if body.reported is not None:
        stats = reported_latency_stats(body.reported)
        provenance["headline"] = REPORTED_HEADLINE
        provenance["reported"] = body.reported.model_dump()
        quality = measurement_quality(assess([], host))  # the host may say (a hot phone)
    else:
        try:
            stats = latency_stats(body.samples_ms)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from exc
        quality = measurement_quality(assess(body.samples_ms, host))
    now = utcnow()
    row = {
        **row_values(body, stats, quality),
        "job_id": job.id,
        "source": MeasurementSource.measured.value,
        "model_id": job.model_id,
        "device_id": device_id,
        "provenance": provenance or None,
        "config": job.config,
        "runtime_identity": job.runtime_identity,
        "purpose": job.purpose,
        "created_at": now,
    }
    row["id"] = repository.insert_measurement(session, row)
    repository.insert_ops(session, op_values(row["id"], body.ops))
    jobs.finish(session, job.id, JobState.done, None, now)
    log.info("measurement stored", extra={"job_id": job.id, "device_id": device_id})
    return measurement_out(row, samples=False), True


def get_measurement(session: Session, measurement_id: int) -> MeasurementOut:
    """One measurement with its raw samples and per-op rows."""
    row = repository.by_id(session, measurement_id)
    if row is None:
        raise NotFound(f"no measurement {measurement_id}")
    return measurement_out(row, repository.ops_of(session, [measurement_id])[measurement_id])


def count_measurements(
    session: Session, *, model_id: str | None, device_id: str | None, job_id: str | None
) -> int:
    return repository.counted(session, model_id=model_id, device_id=device_id, job_id=job_id)


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
    newest_first: bool = False,
) -> list[MeasurementOut]:
    rows = repository.listed(
        session,
        model_id=model_id,
        device_id=device_id,
        job_id=job_id,
        limit=limit,
        offset=offset,
        newest_first=newest_first,
    )
    by_id = repository.ops_of(session, [r["id"] for r in rows]) if ops else {}
    return [
        measurement_out(r, by_id.get(r["id"], []) if ops else None, samples=samples) for r in rows
    ]
