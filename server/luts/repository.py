"""The LUT tables' SQL: the requests' reads, the background builder's locks and the
measurements a LUT is built and calibrated from."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from latlab.schemas import JobState, LutState, MeasurementSource
from latlab.server.db import affected, in_chunks
from latlab.server.tables import (
    DatasetArch,
    Job,
    Lut,
    LutKernel,
    Measurement,
    OpMeasurement,
    core_table,
)

__all__ = [
    "Whole",
    "add",
    "add_kernels",
    "anchored_ops",
    "delete_kernels",
    "delete_kernels_of_model",
    "delete_lut",
    "get",
    "job_states",
    "kernel_count",
    "listed",
    "lock",
    "measured_kernels",
    "measured_models",
    "measuring",
    "newest_ready",
    "next_preparing",
    "pending_micro_jobs",
    "profiles",
    "unbuilt_specs",
    "using_model",
]


@dataclass(frozen=True)
class Whole:
    """A whole model measured on the device: enough to calibrate on or to build from."""

    measurement_id: int
    model_id: str
    median_ms: float


def get(session: Session, lut_id: str) -> Lut | None:
    return session.get(Lut, lut_id)


def add(session: Session, lut: Lut) -> None:
    session.add(lut)
    session.flush()


def add_kernels(session: Session, kernels: list[LutKernel]) -> None:
    session.add_all(kernels)
    session.flush()


def listed(session: Session, device_id: str | None) -> list[Lut]:
    query = select(Lut).order_by(Lut.created_at)
    if device_id is not None:
        query = query.where(Lut.device_id == device_id)
    return list(session.scalars(query))


def newest_ready(session: Session, device_id: str) -> Lut | None:
    return session.scalar(
        select(Lut)
        .where(Lut.device_id == device_id, Lut.state == LutState.ready.value)
        .order_by(Lut.built_at.desc(), Lut.id)
        .limit(1)
    )


def job_states(session: Session, lut_id: str) -> dict[str, int]:
    """How many of the LUT's micro-model jobs are in each state."""
    rows = session.execute(
        select(Job.state, func.count())
        .join(LutKernel, LutKernel.job_id == Job.id)
        .where(LutKernel.lut_id == lut_id)
        .group_by(Job.state)
    )
    return {state: count for state, count in rows}


def next_preparing(session: Session) -> Lut | None:
    """The oldest LUT still to build or prepare, locked (skipped if another worker holds it)."""
    return session.scalar(
        select(Lut)
        .where(Lut.state == LutState.preparing.value)
        .order_by(Lut.created_at)
        .limit(1)
        .with_for_update(skip_locked=True)
    )


def measuring(session: Session) -> Iterator[Lut]:
    """LUTs waiting for their micro-models, locked one by one as they are read."""
    yield from session.scalars(
        select(Lut).where(Lut.state == LutState.measuring.value).with_for_update(skip_locked=True)
    )


def pending_micro_jobs(session: Session, lut_id: str) -> int:
    pending = [JobState.queued.value, JobState.leased.value]
    return (
        session.scalar(
            select(func.count())
            .select_from(LutKernel)
            .join(Job, Job.id == LutKernel.job_id)
            .where(LutKernel.lut_id == lut_id, Job.state.in_(pending))
        )
        or 0
    )


def kernel_count(session: Session, lut_id: str) -> int:
    return session.scalar(select(func.count()).where(LutKernel.lut_id == lut_id)) or 0


def measured_kernels(session: Session, lut_id: str) -> list[tuple[LutKernel, Measurement]]:
    """The LUT's kernels whose micro-model has a measurement, with it."""
    rows = session.execute(
        select(LutKernel, Measurement)
        .join(Measurement, Measurement.job_id == LutKernel.job_id)
        .where(LutKernel.lut_id == lut_id)
    )
    return [(kernel, measurement) for kernel, measurement in rows]


def anchored_ops(session: Session, measurement_id: int, anchor: str) -> list[tuple[float, int]]:
    """(dur_us, n) of the measurement's per-op rows that computed the node ``anchor``."""
    return [
        (dur_us, n)
        for dur_us, n, sources in session.execute(
            select(OpMeasurement.dur_us, OpMeasurement.n, OpMeasurement.source_nodes).where(
                OpMeasurement.measurement_id == measurement_id
            )
        )
        if anchor in sources
    ]


def measured_models(
    session: Session,
    device_id: str,
    identity_key: str,
    model_ids: Sequence[str] | None,
    dataset_id: str | None,
    *,
    with_ops: bool,
    limit: int,
) -> list[Whole]:
    """Whole models measured on the device with this runtime identity, newest first
    (micro-models of any LUT left out); ``with_ops``: only those with per-op rows."""
    query = select(Measurement.id, Measurement.model_id, Measurement.median_ms).where(
        Measurement.device_id == device_id,
        Measurement.runtime_identity == identity_key,
        Measurement.source == MeasurementSource.measured.value,
        Measurement.model_id.is_not(None),
        Measurement.model_id.not_in(select(LutKernel.model_id)),
    )
    if model_ids is not None:
        query = query.where(Measurement.model_id.in_(model_ids))
    if dataset_id is not None:
        query = query.where(
            Measurement.model_id.in_(
                select(DatasetArch.model_id).where(DatasetArch.dataset_id == dataset_id)
            )
        )
    if with_ops:
        query = query.where(
            select(OpMeasurement.id).where(OpMeasurement.measurement_id == Measurement.id).exists()
        )
    rows = session.execute(query.order_by(Measurement.id.desc()).limit(limit))
    return [Whole(m_id, str(model_id), median_ms) for m_id, model_id, median_ms in rows]


def profiles(
    session: Session, measurement_ids: Sequence[int]
) -> dict[int, list[tuple[float, list[str]]]]:
    """Each measurement's per-op rows in run order: (dur_us, the graph nodes it computed)."""
    ops: dict[int, list[tuple[float, list[str]]]] = {m: [] for m in measurement_ids}
    for chunk in in_chunks(measurement_ids):
        for m_id, dur_us, sources in session.execute(
            select(OpMeasurement.measurement_id, OpMeasurement.dur_us, OpMeasurement.source_nodes)
            .where(OpMeasurement.measurement_id.in_(chunk))
            .order_by(OpMeasurement.measurement_id, OpMeasurement.seq)
        ):
            ops[m_id].append((dur_us, list(sources)))
    return ops


# --------------------------------------------------------------------------- deletes

_kernels = core_table(LutKernel)


def lock(session: Session, lut_id: str) -> Lut | None:
    """The LUT, locked: a builder step holding it is waited for, and none starts on it until
    this transaction ends."""
    return session.scalar(select(Lut).where(Lut.id == lut_id).with_for_update())


def delete_kernels(session: Session, lut_id: str) -> list[str]:
    """Delete the LUT's micro-model rows; their job ids."""
    rows = session.execute(
        delete(_kernels).where(_kernels.c.lut_id == lut_id).returning(_kernels.c.job_id)
    )
    return [job_id for (job_id,) in rows]


def delete_lut(session: Session, lut_id: str) -> int:
    """Delete the LUT's row (its micro-model rows gone first)."""
    return affected(session.execute(delete(Lut).where(Lut.id == lut_id)))


def using_model(session: Session, model_id: str) -> list[tuple[str, str]]:
    """The LUTs with a micro-model that is this model: (id, name), oldest first."""
    rows = session.execute(
        select(Lut.id, Lut.name)
        .where(Lut.id.in_(select(_kernels.c.lut_id).where(_kernels.c.model_id == model_id)))
        .order_by(Lut.created_at)
    )
    return [(lut_id, name) for lut_id, name in rows]


def unbuilt_specs(session: Session) -> list[tuple[str, str, dict[str, Any]]]:
    """The LUTs still preparing or measuring: (id, name, request), oldest first."""
    unbuilt = [LutState.preparing.value, LutState.measuring.value]
    rows = session.execute(
        select(Lut.id, Lut.name, Lut.spec).where(Lut.state.in_(unbuilt)).order_by(Lut.created_at)
    )
    return [(lut_id, name, dict(spec)) for lut_id, name, spec in rows]


def delete_kernels_of_model(session: Session, model_id: str) -> int:
    """Delete the micro-model rows of any LUT that are this model; how many."""
    return affected(session.execute(delete(_kernels).where(_kernels.c.model_id == model_id)))
