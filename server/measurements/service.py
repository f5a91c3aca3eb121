"""Measurements: results stored once per job (idempotent by job + lease), and queried."""

from __future__ import annotations

import logging

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session, selectinload

from latlab.runtimes import stored_config
from latlab.schemas import (
    JobState,
    LatencyStats,
    MeasurementIn,
    MeasurementOut,
    MeasurementSource,
    OpTiming,
    WarmupInfo,
)
from latlab.stats import REPORTED_HEADLINE, latency_stats, reported_latency_stats
from server.db import utcnow
from server.errors import InvalidInput, NotFound
from server.jobs.service import check_lease, locked_job
from server.tables import Measurement, OpMeasurement

__all__ = ["get_measurement", "list_measurements", "measurement_out", "store_result"]

log = logging.getLogger(__name__)


def store_result(
    session: Session, device_id: str, job_id: str, body: MeasurementIn
) -> tuple[Measurement, bool]:
    """Store the agent's result and finish the job; (row, created). A repeat is a no-op."""
    job = locked_job(session, job_id)
    if (
        job.state == JobState.done.value
        and job.claimed_by == device_id
        and job.lease_token == body.lease_token
    ):
        return _by_job(session, job_id), False
    job = check_lease(session, device_id, job_id, body.lease_token)
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
    row = Measurement(
        job_id=job.id,
        source=MeasurementSource.measured.value,  # set here: the answer is built from this row
        model_id=job.model_id,
        device_id=device_id,
        runtime=body.runtime,
        runtime_version=body.runtime_version,
        provider=body.provider,
        threads=body.threads,
        protocol_version=body.protocol_version,
        agent_version=body.agent_version,
        input_shapes=body.input_shapes,
        provenance=provenance or None,
        config=job.config,
        warmup_n=body.warmup.n,
        warmup_total_ms=body.warmup.total_ms,
        samples_ms=list(body.samples_ms),
        timing_wall_s=body.timing_wall_s,
        op_profile=body.op_profile,
        created_at=now,
        **stats.model_dump(),
    )
    session.add(row)
    session.flush()
    session.add_all(
        OpMeasurement(
            measurement_id=row.id,
            seq=i,
            node_name=op.node_name,
            op_type=op.op_type,
            provider=op.provider,
            dur_us=op.dur_us,
            n=op.n,
            source_nodes=list(op.source_nodes),
        )
        for i, op in enumerate(body.ops)
    )
    job.state = JobState.done.value
    job.error = None
    job.lease_expires_at = None
    job.finished_at = job.updated_at = now
    session.flush()
    log.info("measurement stored", extra={"job_id": job.id, "device_id": device_id})
    return row, True


def _one(session: Session, where: ColumnElement[bool], missing: str) -> Measurement:
    row = session.scalar(select(Measurement).where(where).options(selectinload(Measurement.ops)))
    if row is None:
        raise NotFound(missing)
    return row


def _by_job(session: Session, job_id: str) -> Measurement:
    return _one(session, Measurement.job_id == job_id, f"job {job_id} has no measurement")


def get_measurement(session: Session, measurement_id: int) -> Measurement:
    return _one(session, Measurement.id == measurement_id, f"no measurement {measurement_id}")


def list_measurements(
    session: Session,
    *,
    model_id: str | None = None,
    device_id: str | None = None,
    job_id: str | None = None,
    with_ops: bool = False,
    limit: int = 100,
    offset: int = 0,
) -> list[Measurement]:
    query = select(Measurement)
    if model_id is not None:
        query = query.where(Measurement.model_id == model_id)
    if device_id is not None:
        query = query.where(Measurement.device_id == device_id)
    if job_id is not None:
        query = query.where(Measurement.job_id == job_id)
    if with_ops:
        query = query.options(selectinload(Measurement.ops))
    query = query.order_by(Measurement.id).limit(limit).offset(offset)
    return list(session.scalars(query))


def measurement_out(row: Measurement, *, samples: bool = True, ops: bool = True) -> MeasurementOut:
    return MeasurementOut(
        id=row.id,
        job_id=row.job_id,
        model_id=row.model_id,
        source=MeasurementSource(row.source),
        provenance=row.provenance,
        device_id=row.device_id,
        runtime=row.runtime,
        runtime_version=row.runtime_version,
        provider=row.provider,
        threads=row.threads,
        protocol_version=row.protocol_version,
        agent_version=row.agent_version,
        input_shapes=row.input_shapes,
        config=stored_config(row.config) if row.config else None,
        warmup=WarmupInfo(n=row.warmup_n, total_ms=row.warmup_total_ms),
        stats=LatencyStats(
            n=row.n,
            median_ms=row.median_ms,
            mean_ms=row.mean_ms,
            std_ms=row.std_ms,
            min_ms=row.min_ms,
            max_ms=row.max_ms,
            p10_ms=row.p10_ms,
            p90_ms=row.p90_ms,
            p99_ms=row.p99_ms,
            iqr_ms=row.iqr_ms,
        ),
        samples_ms=list(row.samples_ms) if samples else None,
        timing_wall_s=row.timing_wall_s,
        op_profile=row.op_profile,
        ops=[
            OpTiming(
                node_name=op.node_name,
                op_type=op.op_type,
                provider=op.provider,
                dur_us=op.dur_us,
                n=op.n,
                source_nodes=list(op.source_nodes),
            )
            for op in row.ops
        ]
        if ops
        else None,
        created_at=row.created_at,
    )
