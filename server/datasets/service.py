"""Dataset campaigns: archs of a space x devices, each exported, uploaded and queued once.

A campaign is stored whole when it is created (its archs and devices) and prepared in the
background, one arch per transaction: export to ONNX, store the model (deduplicated), queue a
job per device, record the entries. A server restart resumes preparing where it stopped; the
jobs themselves live in the queue, so nothing measured is measured again.
"""

from __future__ import annotations

import logging
import tempfile
import uuid
from collections import Counter
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from latlab.datasets.dump import STAT_FIELDS, ArchRow, DatasetDump, DeviceRow, MeasurementRow, OpRow
from latlab.export.files import model_file
from latlab.runtimes import runtime_spec, stored_config
from latlab.schemas import (
    DatasetCreate,
    DatasetOut,
    DatasetProgress,
    DatasetSource,
    DatasetState,
    JobCreate,
    JobState,
)
from latlab.server.blobstore import BlobStore
from latlab.server.config import Settings
from latlab.server.db import utcnow
from latlab.server.devices.service import agent_devices, job_device
from latlab.server.errors import InvalidInput, NotFound
from latlab.server.jobs.service import create_job, device_can_run, selector_matches
from latlab.server.models.service import store_model
from latlab.server.tables import (
    Dataset,
    DatasetArch,
    DatasetEntry,
    Device,
    Job,
    Measurement,
    OpMeasurement,
)
from latlab.spaces import GraphForm, get_space

__all__ = [
    "create_campaign",
    "dataset_dump",
    "dataset_out",
    "get_dataset",
    "list_datasets",
    "prepare_next",
]

log = logging.getLogger(__name__)

#: Weights of exported archs: fixed, so the same arch is the same model file in every campaign.
EXPORT_SEED = 0


def create_campaign(session: Session, body: DatasetCreate, max_archs: int = 100_000) -> DatasetOut:
    space = get_space(body.space, **body.space_params)
    if body.archs is not None:
        if body.n is not None:
            raise InvalidInput("give archs or n, not both")
        archs = list(dict.fromkeys(space.parse(a) for a in body.archs))
    elif body.n is not None:
        archs = space.sample(body.n, body.seed)
    else:
        raise InvalidInput("give archs (a list) or n (how many to sample)")
    devices = _devices(session, body)
    if len(archs) * len(devices) > max_archs:
        raise InvalidInput(f"{len(archs)} archs x {len(devices)} devices exceeds {max_archs} jobs")
    dataset = Dataset(
        id=uuid.uuid4().hex,
        name=body.name,
        space=space.name,
        space_params=dict(body.space_params),
        source=DatasetSource.campaign.value,
        state=DatasetState.preparing.value,
        form=body.form.value,
        config=body.config.model_dump(mode="json"),
        provenance={"devices": [d.id for d in devices], "seed": body.seed, "n": body.n},
        created_at=utcnow(),
    )
    session.add(dataset)
    session.add_all(
        DatasetArch(
            dataset_id=dataset.id, position=i, arch=space.encode(a), arch_index=str(a.index)
        )
        for i, a in enumerate(archs)
    )
    session.flush()
    log.info("dataset created", extra={"dataset_id": dataset.id})
    return dataset_out(session, dataset)


def _devices(session: Session, body: DatasetCreate) -> list[Device]:
    if (body.device_ids is None) == (body.selector is None):
        raise InvalidInput("give device_ids or a selector")
    config = body.config
    if body.device_ids is not None:
        resolved = [job_device(session, d) for d in body.device_ids]  # ids or names
        devices = list({d.id: d for d in resolved}.values())
    else:
        assert body.selector is not None
        if not body.selector:
            raise InvalidInput("the device selector is empty: name at least one field")
        devices = [
            d
            for d in agent_devices(session)
            if selector_matches(body.selector, d.name, d.descriptor)
        ]
        if not devices:
            raise InvalidInput(f"no registered device matches {body.selector}")
    unable = [d.id for d in devices if not device_can_run(d.descriptor, config)]
    if unable:
        raise InvalidInput(f"devices {unable} cannot run {config.runtime} with {config.provider}")
    return devices


def prepare_next(session: Session, blobs: BlobStore, settings: Settings) -> bool:
    """Prepare one arch of the oldest preparing campaign; False when there is nothing to do."""
    dataset = session.scalar(
        select(Dataset)
        .where(Dataset.state == DatasetState.preparing.value)
        .order_by(Dataset.created_at)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    if dataset is None:
        return False
    arch_row = session.scalar(
        select(DatasetArch)
        .where(DatasetArch.dataset_id == dataset.id, DatasetArch.model_id.is_(None))
        .order_by(DatasetArch.position)
        .limit(1)
    )
    if arch_row is None:
        dataset.state = DatasetState.measuring.value
        log.info("dataset prepared", extra={"dataset_id": dataset.id})
        return True
    space = get_space(dataset.space, **dataset.space_params)
    form = GraphForm(dataset.form or GraphForm.pruned)
    graph = space.graph(space.parse(arch_row.arch), form)
    work_dir = settings.upload_dir
    work_dir.mkdir(parents=True, exist_ok=True)
    config = stored_config(dataset.config or {})
    fmt = runtime_spec(config.runtime).model_format  # ONNX, or TFLite for phones and LiteRT
    with tempfile.NamedTemporaryFile(dir=work_dir, suffix=f".{fmt.value}", delete=False) as tmp:
        tmp.write(model_file(graph, fmt, seed=EXPORT_SEED))
    stem = f"{dataset.space}-{arch_row.arch_index}"
    if form is not GraphForm.pruned:
        stem += f"-{form}"
    model, _ = store_model(session, blobs, Path(tmp.name), f"{stem}.{fmt.value}")
    arch_row.model_id = model.id
    for device_id in (dataset.provenance or {})["devices"]:
        job = create_job(
            session,
            JobCreate(model_id=model.id, device_id=device_id, config=config),
            settings.max_attempts,
        )
        session.add(DatasetEntry(dataset_arch_id=arch_row.id, device_id=device_id, job_id=job.id))
    session.flush()
    return True


def get_dataset(session: Session, dataset_id: str) -> Dataset:
    dataset = session.get(Dataset, dataset_id)
    if dataset is None:
        raise NotFound(f"no dataset {dataset_id!r}")
    return dataset


def list_datasets(session: Session) -> list[DatasetOut]:
    return [
        dataset_out(session, d)
        for d in session.scalars(select(Dataset).order_by(Dataset.created_at))
    ]


def dataset_out(session: Session, dataset: Dataset) -> DatasetOut:
    n_archs = session.scalar(select(func.count()).where(DatasetArch.dataset_id == dataset.id)) or 0
    device_ids = _device_ids(session, dataset)
    entries = (
        select(func.count())
        .select_from(DatasetEntry)
        .join(DatasetArch, DatasetArch.id == DatasetEntry.dataset_arch_id)
        .where(DatasetArch.dataset_id == dataset.id)
    )
    if dataset.source == DatasetSource.imported:
        done = session.scalar(entries) or 0
        progress = DatasetProgress(
            archs=n_archs, devices=len(device_ids), prepared=n_archs, done=done, failed=0, pending=0
        )
    else:
        prepared = (
            session.scalar(
                select(func.count()).where(
                    DatasetArch.dataset_id == dataset.id, DatasetArch.model_id.is_not(None)
                )
            )
            or 0
        )
        by_state = session.execute(
            entries.join(Job, Job.id == DatasetEntry.job_id)
            .with_only_columns(Job.state, func.count())
            .group_by(Job.state)
        )
        states: Counter[str] = Counter({state: count for state, count in by_state})
        done = states[JobState.done.value]
        failed = states[JobState.failed.value] + states[JobState.cancelled.value]
        progress = DatasetProgress(
            archs=n_archs,
            devices=len(device_ids),
            prepared=prepared,
            done=done,
            failed=failed,
            pending=n_archs * len(device_ids) - done - failed,
        )
    state = DatasetState(dataset.state)
    if state == DatasetState.measuring and progress.pending == 0:
        state = DatasetState.done
    return DatasetOut(
        id=dataset.id,
        name=dataset.name,
        space=dataset.space,
        space_params=dataset.space_params,
        source=DatasetSource(dataset.source),
        state=state,
        form=GraphForm(dataset.form) if dataset.form else None,
        config=stored_config(dataset.config) if dataset.config else None,
        provenance=dataset.provenance,
        error=dataset.error,
        device_ids=device_ids,
        progress=progress,
        created_at=dataset.created_at,
    )


def _device_ids(session: Session, dataset: Dataset) -> list[str]:
    if dataset.source == DatasetSource.campaign:
        return list((dataset.provenance or {}).get("devices", []))
    rows = session.scalars(
        select(DatasetEntry.device_id)
        .join(DatasetArch, DatasetArch.id == DatasetEntry.dataset_arch_id)
        .where(DatasetArch.dataset_id == dataset.id)
        .distinct()
    )
    return sorted(rows)


def dataset_dump(session: Session, dataset: Dataset, full: bool) -> DatasetDump:
    """Everything measured so far, as plain rows (archs without a result are listed,
    unmeasured). ``full``: with raw samples and per-op rows (Parquet)."""
    space = get_space(dataset.space, **dataset.space_params)
    archs = list(
        session.scalars(
            select(DatasetArch)
            .where(DatasetArch.dataset_id == dataset.id)
            .order_by(DatasetArch.position)
        )
    )
    device_ids = _device_ids(session, dataset)
    devices = [session.get_one(Device, d) for d in device_ids]
    measurements = _measurement_rows(session, dataset, with_samples=full)
    ops = _op_rows(session, [m.measurement_id for m in measurements]) if full else []
    return DatasetDump(
        id=dataset.id,
        name=dataset.name,
        space=dataset.space,
        space_params=dataset.space_params,
        source=dataset.source,
        form=dataset.form,
        config=dataset.config,
        provenance=dataset.provenance,
        archs=[
            ArchRow(
                a.position,
                a.arch,
                a.arch_index,
                getattr(space.parse(a.arch), "vector", None),
                a.model_id,
            )
            for a in archs
        ],
        devices=[DeviceRow(d.id, d.name, d.descriptor) for d in devices],
        measurements=measurements,
        ops=ops,
    )


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
)


def _measurement_rows(
    session: Session, dataset: Dataset, *, with_samples: bool
) -> list[MeasurementRow]:
    """Columns, not ORM objects: a dataset can hold 10^5 measurements. An import keeps each
    device's rows in file order; a campaign lists them by arch position."""
    imported = dataset.source == DatasetSource.imported
    query = (
        select(DatasetArch.arch, *_HEADLINE_COLUMNS)
        .add_columns(*([Measurement.samples_ms] if with_samples else []))
        .select_from(DatasetEntry)
        .join(DatasetArch, DatasetArch.id == DatasetEntry.dataset_arch_id)
        .where(DatasetArch.dataset_id == dataset.id)
    )
    if imported:
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
    n_stats = len(STAT_FIELDS)
    out = []
    for row in session.execute(query):
        arch, m_id, device_id, source, median_ms, provenance, n = row[:7]
        stats = dict(zip(STAT_FIELDS, row[7 : 7 + n_stats], strict=True))
        runtime, version, provider, threads, protocol, agent, created_at = row[
            7 + n_stats : 14 + n_stats
        ]
        out.append(
            MeasurementRow(
                measurement_id=m_id,
                arch=arch,
                device_id=device_id,
                source=source,
                latency_ms=median_ms,
                latency_s=(provenance or {}).get("latency_s"),
                n=n,
                stats=stats,
                samples_ms=list(row[14 + n_stats]) if with_samples else None,
                runtime=runtime,
                runtime_version=version,
                provider=provider,
                threads=threads,
                protocol_version=protocol,
                agent_version=agent,
                created_at=created_at.isoformat(),
                provenance=provenance,
            )
        )
    return out


def _op_rows(session: Session, measurement_ids: list[int]) -> list[OpRow]:
    ops: list[OpRow] = []
    for start in range(0, len(measurement_ids), 500):
        for op in session.scalars(
            select(OpMeasurement)
            .where(OpMeasurement.measurement_id.in_(measurement_ids[start : start + 500]))
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
