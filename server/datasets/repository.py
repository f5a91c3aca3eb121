"""The dataset tables' SQL: campaigns and imports written, progress counted, exports read.

A dataset can hold 10^5 measurements: imports insert with Core statements batched by the driver,
and exports read columns, not ORM objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import Select, and_, delete, func, insert, select, update
from sqlalchemy.orm import Session

from latlab.datasets.dump import QUALITY_FIELDS, STAT_FIELDS, MeasurementRow, OpRow
from latlab.schemas import DatasetSource, DatasetState, JobState
from latlab.server.db import affected, in_chunks, reserve_ids
from latlab.server.tables import (
    Dataset,
    DatasetArch,
    DatasetEntry,
    Job,
    Measurement,
    OpMeasurement,
    core_table,
)

__all__ = [
    "SpaceLatency",
    "add",
    "add_archs",
    "add_entries",
    "arch_count",
    "arch_ids",
    "archs",
    "delete_dataset",
    "delete_entries",
    "delete_entries_of_model",
    "entry_count",
    "entry_device_ids",
    "first_error",
    "get",
    "has_pending",
    "insert_imported",
    "job_states",
    "listed",
    "lock",
    "measured_entries",
    "measurement_rows",
    "measuring_campaigns",
    "next_preparing",
    "next_unprepared_arch",
    "op_rows",
    "prepared_count",
    "remeasure",
    "remeasured_count",
    "space_latencies",
    "unprepare_archs_of_model",
    "unprepared_failed_count",
    "using_model",
]

_archs = core_table(DatasetArch)
_entries = core_table(DatasetEntry)
_measurements = core_table(Measurement)


# --------------------------------------------------------------------------- writes


def add(session: Session, dataset: Dataset) -> None:
    session.add(dataset)
    session.flush()


def add_archs(
    session: Session, dataset_id: str, archs: Sequence[tuple[str, str]], first_position: int = 0
) -> None:
    """The dataset's archs, (encoded arch, index) in position order (after ``first_position``
    archs already there: an active campaign's next round)."""
    session.execute(
        insert(_archs),
        [
            {"dataset_id": dataset_id, "position": i, "arch": arch, "arch_index": index}
            for i, (arch, index) in enumerate(archs, start=first_position)
        ],
    )


def arch_ids(session: Session, dataset_id: str) -> dict[str, int]:
    """Row id by encoded arch."""
    rows = session.execute(
        select(DatasetArch.arch, DatasetArch.id).where(DatasetArch.dataset_id == dataset_id)
    )
    return {arch: arch_id for arch, arch_id in rows}


def add_entries(session: Session, arch_id: int, jobs: dict[str, str]) -> None:
    """A campaign arch's entries: its job on each device (job id by device id)."""
    session.add_all(
        DatasetEntry(dataset_arch_id=arch_id, device_id=device_id, job_id=job_id)
        for device_id, job_id in jobs.items()
    )
    session.flush()


def insert_imported(
    session: Session,
    measurements: Sequence[dict[str, Any]],
    entries: Sequence[tuple[int, str]],
) -> None:
    """Imported measurements (rows of ``measurements`` without their ids) and one entry each,
    (arch row id, device id) in the same order."""
    ids = reserve_ids(session, _measurements, len(measurements))
    session.execute(
        insert(_measurements),
        [{**row, "id": m_id} for row, m_id in zip(measurements, ids, strict=True)],
    )
    session.execute(
        insert(_entries),
        [
            {"dataset_arch_id": arch_id, "device_id": device_id, "measurement_id": m_id}
            for (arch_id, device_id), m_id in zip(entries, ids, strict=True)
        ],
    )
    session.flush()


# --------------------------------------------------------------------------- reads


def get(session: Session, dataset_id: str) -> Dataset | None:
    return session.get(Dataset, dataset_id)


def listed(session: Session) -> list[Dataset]:
    return list(session.scalars(select(Dataset).order_by(Dataset.created_at)))


def next_preparing(session: Session) -> Dataset | None:
    """The oldest campaign still being prepared, locked (skipped if another worker holds it)."""
    return session.scalar(
        select(Dataset)
        .where(Dataset.state == DatasetState.preparing.value)
        .order_by(Dataset.created_at)
        .limit(1)
        .with_for_update(skip_locked=True)
    )


def next_unprepared_arch(session: Session, dataset_id: str) -> DatasetArch | None:
    return session.scalar(
        select(DatasetArch)
        .where(
            DatasetArch.dataset_id == dataset_id,
            DatasetArch.model_id.is_(None),
            DatasetArch.error.is_(None),
        )
        .order_by(DatasetArch.position)
        .limit(1)
    )


def unprepared_failed_count(session: Session, dataset_id: str) -> int:
    """Archs that could not be prepared (they have no jobs)."""
    query = select(func.count()).where(
        DatasetArch.dataset_id == dataset_id, DatasetArch.error.is_not(None)
    )
    return session.scalar(query) or 0


def first_error(session: Session, dataset_id: str) -> str | None:
    """Why the first arch that could not be prepared failed."""
    return session.scalar(
        select(DatasetArch.error)
        .where(DatasetArch.dataset_id == dataset_id, DatasetArch.error.is_not(None))
        .order_by(DatasetArch.position)
        .limit(1)
    )


def archs(session: Session, dataset_id: str) -> list[DatasetArch]:
    return list(
        session.scalars(
            select(DatasetArch)
            .where(DatasetArch.dataset_id == dataset_id)
            .order_by(DatasetArch.position)
        )
    )


def arch_count(session: Session, dataset_id: str) -> int:
    return session.scalar(select(func.count()).where(DatasetArch.dataset_id == dataset_id)) or 0


def prepared_count(session: Session, dataset_id: str) -> int:
    """Archs exported and queued."""
    query = select(func.count()).where(
        DatasetArch.dataset_id == dataset_id, DatasetArch.model_id.is_not(None)
    )
    return session.scalar(query) or 0


def _entries_of(dataset_id: str) -> Select[int]:
    return (
        select(func.count())
        .select_from(DatasetEntry)
        .join(DatasetArch, DatasetArch.id == DatasetEntry.dataset_arch_id)
        .where(DatasetArch.dataset_id == dataset_id)
    )


def entry_count(session: Session, dataset_id: str) -> int:
    return session.scalar(_entries_of(dataset_id)) or 0


def job_states(session: Session, dataset_id: str) -> dict[str, int]:
    """How many of the campaign's jobs are in each state."""
    rows = session.execute(
        _entries_of(dataset_id)
        .join(Job, Job.id == DatasetEntry.job_id)
        .with_only_columns(Job.state, func.count())
        .group_by(Job.state)
    )
    return {state: count for state, count in rows}


def measuring_campaigns(session: Session) -> list[Dataset]:
    """Campaigns whose archs are all queued (their measurements may be complete), locked
    (those another check or a delete holds skipped)."""
    return list(
        session.scalars(
            select(Dataset)
            .where(
                Dataset.source == DatasetSource.campaign.value,
                Dataset.state == DatasetState.measuring.value,
            )
            .order_by(Dataset.created_at)
            .with_for_update(skip_locked=True)
        )
    )


def has_pending(session: Session, dataset_id: str) -> bool:
    """Whether a job of the campaign is queued or leased (stops at the first)."""
    query = (
        select(DatasetEntry.job_id)
        .join(DatasetArch, DatasetArch.id == DatasetEntry.dataset_arch_id)
        .join(Job, Job.id == DatasetEntry.job_id)
        .where(
            DatasetArch.dataset_id == dataset_id,
            Job.state.in_([JobState.queued.value, JobState.leased.value]),
        )
        .limit(1)
    )
    return session.scalar(query) is not None


def measured_entries(session: Session, dataset_id: str, device_id: str) -> list[Any]:
    """The campaign's measured entries on the device, in time order: the entry (its
    ``dataset_arch_id``, ``remeasured``), the arch's model and the measurement's time."""
    return list(
        session.execute(
            select(
                DatasetEntry.dataset_arch_id,
                DatasetEntry.remeasured,
                DatasetArch.model_id,
                Measurement.created_at,
            )
            .join(DatasetArch, DatasetArch.id == DatasetEntry.dataset_arch_id)
            .join(Measurement, Measurement.job_id == DatasetEntry.job_id)
            .where(DatasetArch.dataset_id == dataset_id, DatasetEntry.device_id == device_id)
            .order_by(Measurement.created_at)
        )
    )


def remeasure(session: Session, dataset_arch_id: int, device_id: str, job_id: str) -> None:
    """The entry is measured again by ``job_id``."""
    session.execute(
        update(DatasetEntry)
        .where(
            DatasetEntry.dataset_arch_id == dataset_arch_id,
            DatasetEntry.device_id == device_id,
        )
        .values(job_id=job_id, remeasured=DatasetEntry.remeasured + 1)
    )


def remeasured_count(session: Session, dataset_id: str) -> int:
    """Entries measured again at least once because their canary window drifted."""
    query = _entries_of(dataset_id).where(DatasetEntry.remeasured > 0)
    return session.scalar(query) or 0


def entry_device_ids(session: Session, dataset_id: str) -> list[str]:
    """The devices the dataset has entries for, sorted."""
    rows = session.scalars(
        select(DatasetEntry.device_id)
        .join(DatasetArch, DatasetArch.id == DatasetEntry.dataset_arch_id)
        .where(DatasetArch.dataset_id == dataset_id)
        .distinct()
    )
    return sorted(rows)


_HEADLINE_COLUMNS = (
    Measurement.id,
    Measurement.device_id,
    Measurement.source,
    Measurement.median_ms,
    Measurement.provenance,
    Measurement.n,
    *(getattr(Measurement, k) for k in STAT_FIELDS),
    Measurement.runtime,
    Measurement.runtime_version,
    Measurement.provider,
    Measurement.threads,
    Measurement.protocol_version,
    Measurement.agent_version,
    Measurement.created_at,
    *(getattr(Measurement, k) for k in QUALITY_FIELDS),
)


def measurement_rows(
    session: Session, dataset: Dataset, *, with_samples: bool
) -> list[MeasurementRow]:
    """Columns, not ORM objects. An import keeps each device's rows in file order; a
    campaign lists its done jobs' measurements by arch position."""
    query = (
        select(DatasetArch.arch, *_HEADLINE_COLUMNS)
        .add_columns(*([Measurement.samples_ms] if with_samples else []))
        .select_from(DatasetEntry)
        .join(DatasetArch, DatasetArch.id == DatasetEntry.dataset_arch_id)
        .where(DatasetArch.dataset_id == dataset.id)
    )
    if dataset.source == DatasetSource.imported:
        query = query.join(Measurement, Measurement.id == DatasetEntry.measurement_id).order_by(
            Measurement.id
        )
    else:
        query = (
            query.join(Job, Job.id == DatasetEntry.job_id)
            .join(Measurement, Measurement.job_id == Job.id)
            .where(Job.state == JobState.done.value)
            .order_by(DatasetArch.position, DatasetEntry.device_id)
        )
    out = []
    for row in session.execute(query):
        m = row._mapping
        provenance = m["provenance"]
        out.append(
            MeasurementRow(
                measurement_id=m["id"],
                arch=m["arch"],
                device_id=m["device_id"],
                source=m["source"],
                latency_ms=m["median_ms"],
                latency_s=(provenance or {}).get("latency_s"),
                n=m["n"],
                stats={k: m[k] for k in STAT_FIELDS},
                samples_ms=list(m["samples_ms"]) if with_samples else None,
                runtime=m["runtime"],
                runtime_version=m["runtime_version"],
                provider=m["provider"],
                threads=m["threads"],
                protocol_version=m["protocol_version"],
                agent_version=m["agent_version"],
                created_at=m["created_at"].isoformat(),
                provenance=provenance,
                quality={k: m[k] for k in QUALITY_FIELDS},
            )
        )
    return out


def op_rows(session: Session, measurement_ids: Sequence[int]) -> list[OpRow]:
    ops: list[OpRow] = []
    for chunk in in_chunks(measurement_ids):
        for op in session.scalars(
            select(OpMeasurement)
            .where(OpMeasurement.measurement_id.in_(chunk))
            .order_by(OpMeasurement.measurement_id, OpMeasurement.seq)
        ):
            ops.append(
                OpRow(
                    op.measurement_id,
                    op.seq,
                    op.node_name,
                    op.op_type,
                    op.provider,
                    op.dur_us,
                    op.n,
                    list(op.source_nodes),
                )
            )
    return ops


# --------------------------------------------------------------------------- deletes


def lock(session: Session, dataset_id: str) -> Dataset | None:
    """The dataset, locked: a builder step or canary check holding it is waited for, and none
    starts on it until this transaction ends."""
    return session.scalar(select(Dataset).where(Dataset.id == dataset_id).with_for_update())


def delete_entries(session: Session, dataset_id: str) -> list[tuple[str | None, int | None]]:
    """Delete the dataset's entries; each one's (job id, imported measurement id)."""
    of_dataset = select(_archs.c.id).where(_archs.c.dataset_id == dataset_id)
    rows = session.execute(
        delete(_entries)
        .where(_entries.c.dataset_arch_id.in_(of_dataset))
        .returning(_entries.c.job_id, _entries.c.measurement_id)
    )
    return [(job_id, measurement_id) for job_id, measurement_id in rows]


def delete_dataset(session: Session, dataset_id: str) -> tuple[int, int]:
    """Delete the dataset and its archs (its entries gone first); (datasets, archs)."""
    n_archs = affected(session.execute(delete(_archs).where(_archs.c.dataset_id == dataset_id)))
    n = affected(session.execute(delete(Dataset).where(Dataset.id == dataset_id)))
    return n, n_archs


def using_model(session: Session, model_id: str) -> list[tuple[str, str]]:
    """The datasets with an arch exported as this model: (id, name), oldest first."""
    rows = session.execute(
        select(Dataset.id, Dataset.name)
        .where(Dataset.id.in_(select(_archs.c.dataset_id).where(_archs.c.model_id == model_id)))
        .order_by(Dataset.created_at)
    )
    return [(dataset_id, name) for dataset_id, name in rows]


def delete_entries_of_model(session: Session, model_id: str) -> int:
    """Delete the entries measured by a job of this model; how many."""
    of_model = select(Job.id).where(Job.model_id == model_id)
    return affected(session.execute(delete(_entries).where(_entries.c.job_id.in_(of_model))))


def unprepare_archs_of_model(session: Session, model_id: str, error: str) -> int:
    """The archs exported as this model lose it and fail with ``error`` (counted unprepared;
    the builder does not prepare them again); how many."""
    return affected(
        session.execute(
            update(_archs).where(_archs.c.model_id == model_id).values(model_id=None, error=error)
        )
    )


class SpaceLatency(NamedTuple):
    device_id: str
    form: str | None
    arch: str
    latency_ms: float
    runtime: str


def space_latencies(
    session: Session,
    space: str,
    space_params: dict[str, Any],
    device_ids: Sequence[str] | None = None,
) -> list[SpaceLatency]:
    """Every measured latency of an arch of ``space`` with these parameters in any dataset
    (campaigns: the entry's current job, so a re-measure replaces the drifted figure; imports:
    the stored row), with the dataset's form. Two indexed joins, not one on an OR."""
    rows: list[SpaceLatency] = []
    for joined in (
        Measurement.id == DatasetEntry.measurement_id,
        and_(DatasetEntry.job_id.is_not(None), Measurement.job_id == DatasetEntry.job_id),
    ):
        query = (
            select(
                DatasetEntry.device_id,
                Dataset.form,
                DatasetArch.arch,
                Measurement.median_ms,
                Measurement.runtime,
                Dataset.space_params,
            )
            .select_from(DatasetEntry)
            .join(DatasetArch, DatasetArch.id == DatasetEntry.dataset_arch_id)
            .join(Dataset, Dataset.id == DatasetArch.dataset_id)
            .join(Measurement, joined)
            .where(Dataset.space == space)
        )
        if device_ids is not None:
            query = query.where(DatasetEntry.device_id.in_(list(device_ids)))
        rows += [
            SpaceLatency(device_id, form, arch, latency_ms, runtime)
            for device_id, form, arch, latency_ms, runtime, params in session.execute(query)
            if (params or {}) == space_params  # JSON: compared here, alike on both databases
        ]
    return rows
