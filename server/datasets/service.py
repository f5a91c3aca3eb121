"""Datasets: campaigns requested (archs of a space x devices), progress read back, everything
measured so far dumped for the exports. A campaign is stored whole when it is created and
prepared by the background builder (``builder.py``); imports are ``imports.py``; the SQL is in
``repository.py``.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
import zipfile
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from latlab.datasets.dump import ArchRow, CanaryRow, DatasetDump, DeviceRow, MeasurementRow
from latlab.datasets.latbench import write_latbench
from latlab.datasets.reader import METADATA
from latlab.datasets.tables import datasheet, write_csv, write_parquet
from latlab.runtimes import stored_config
from latlab.schemas import (
    CampaignRound,
    CampaignStrategy,
    DatasetCreate,
    DatasetFormat,
    DatasetOut,
    DatasetProgress,
    DatasetSource,
    DatasetState,
    Deleted,
    DeletedKind,
    JobState,
)
from latlab.server.canary import repository as canary
from latlab.server.canary import service as canary_service
from latlab.server.datasets import active, repository
from latlab.server.datasets.canary_check import CanaryLimits
from latlab.server.db import by_id_or_prefix, utcnow
from latlab.server.devices import repository as device_repository
from latlab.server.devices.service import agent_devices, job_device
from latlab.server.errors import InvalidInput, NotFound
from latlab.server.jobs import repository as jobs
from latlab.server.jobs.service import device_can_run, selector_matches
from latlab.server.measurements import repository as measurements
from latlab.server.tables import (
    Dataset,
    Device,
)
from latlab.spaces import GraphForm, get_space
from latlab.untrusted import excerpt

__all__ = [
    "create_campaign",
    "dataset_dump",
    "dataset_out",
    "delete_dataset",
    "get_dataset",
    "list_datasets",
]

log = logging.getLogger(__name__)


def create_campaign(session: Session, body: DatasetCreate, max_archs: int = 100_000) -> DatasetOut:
    space = get_space(body.space, **body.space_params)
    devices = _devices(session, body)
    extra: dict[str, Any] = {}
    if body.strategy is CampaignStrategy.active:
        chosen, extra["active"] = active.first_round(session, body, devices)
        archs = [space.parse(a) for a in chosen]
    elif body.budget is not None or body.round_size is not None or body.sources is not None:
        raise InvalidInput("budget, round_size and sources are for strategy=active")
    elif body.archs is not None:
        if body.n is not None:
            raise InvalidInput("give archs or n, not both")
        archs = list(dict.fromkeys(space.parse(a) for a in body.archs))
    elif body.n is not None:
        archs = space.sample(body.n, body.seed)
    else:
        raise InvalidInput("give archs (a list) or n (how many to sample)")
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
        provenance={
            "devices": [d.id for d in devices],
            "seed": body.seed,
            "n": body.n,
            "canary": CanaryLimits(body.canary_limit_pct, body.remeasure_drifted).provenance(),
            **extra,
        },
        created_at=utcnow(),
    )
    repository.add(session, dataset)
    repository.add_archs(session, dataset.id, [(space.encode(a), str(a.index)) for a in archs])
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


def get_dataset(session: Session, dataset_id: str) -> Dataset:
    return by_id_or_prefix(session, dataset_id, repository.get, Dataset.id, "dataset")


def delete_dataset(session: Session, dataset_id: str) -> Deleted:
    """Delete the dataset: its record, archs and entries, in one transaction.

    A campaign's pending jobs that no other dataset or LUT needs are cancelled; its measured
    measurements stay (the lab's: another dataset or LUT with the same model and config
    shares them), and so do its models. An import's measurements go unless another entry
    points at them. A campaign still being prepared may be deleted: the builder's step in
    progress is waited for, and no other starts on it."""
    dataset = repository.lock(session, get_dataset(session, dataset_id).id)  # or a prefix
    if dataset is None:
        raise NotFound(f"no dataset {excerpt(dataset_id)}")
    entries = repository.delete_entries(session, dataset.id)
    cancelled = jobs.cancel_unreferenced(
        session,
        [job_id for job_id, _ in entries if job_id is not None],
        f"dataset {dataset.id} was deleted",
        utcnow(),
    )
    imported = measurements.delete_unshared_imports(
        session, [m_id for _, m_id in entries if m_id is not None]
    )
    n, n_archs = repository.delete_dataset(session, dataset.id)
    log.info(
        "dataset deleted",
        extra={"dataset_id": dataset.id, "entries": len(entries), "jobs_cancelled": cancelled},
    )
    return Deleted(
        kind=DeletedKind.dataset,
        id=dataset.id,
        removed={
            "datasets": n,
            "dataset_archs": n_archs,
            "dataset_entries": len(entries),
            "measurements": imported.measurements,
            "op_measurements": imported.op_measurements,
        },
        changed={"jobs_cancelled": cancelled},
    )


def list_datasets(session: Session) -> list[DatasetOut]:
    return [dataset_out(session, d) for d in repository.listed(session)]


def dataset_out(session: Session, dataset: Dataset) -> DatasetOut:
    n_archs = repository.arch_count(session, dataset.id)
    device_ids = _device_ids(session, dataset)
    if dataset.source == DatasetSource.imported:
        done = repository.entry_count(session, dataset.id)
        progress = DatasetProgress(
            archs=n_archs, devices=len(device_ids), prepared=n_archs, done=done, failed=0, pending=0
        )
    else:
        prepared = repository.prepared_count(session, dataset.id)
        unprepared = repository.unprepared_failed_count(session, dataset.id)
        states = Counter(repository.job_states(session, dataset.id))
        done = states[JobState.done.value]
        failed = (
            states[JobState.failed.value]
            + states[JobState.cancelled.value]
            + unprepared * len(device_ids)
        )
        progress = DatasetProgress(
            archs=n_archs,
            devices=len(device_ids),
            prepared=prepared,
            unprepared=unprepared,
            done=done,
            failed=failed,
            pending=n_archs * len(device_ids) - done - failed,
            remeasured=repository.remeasured_count(session, dataset.id),
        )
    return DatasetOut(
        id=dataset.id,
        name=dataset.name,
        space=dataset.space,
        space_params=dataset.space_params,
        source=DatasetSource(dataset.source),
        state=DatasetState(dataset.state),
        form=GraphForm(dataset.form) if dataset.form else None,
        config=stored_config(dataset.config) if dataset.config else None,
        provenance=dataset.provenance,
        error=dataset.error,
        device_ids=device_ids,
        progress=progress,
        created_at=dataset.created_at,
        rounds=[
            CampaignRound.model_validate(r)
            for r in (dataset.provenance or {}).get("active", {}).get("rounds", [])
        ],
    )


def _device_ids(session: Session, dataset: Dataset) -> list[str]:
    if dataset.source == DatasetSource.campaign:
        return list((dataset.provenance or {}).get("devices", []))
    return repository.entry_device_ids(session, dataset.id)


def dataset_dump(session: Session, dataset: Dataset, full: bool) -> DatasetDump:
    """Everything measured so far, as plain rows (archs without a result are listed,
    unmeasured). ``full``: with raw samples and per-op rows (Parquet)."""
    space = get_space(dataset.space, **dataset.space_params)
    archs = repository.archs(session, dataset.id)
    devices = device_repository.by_ids(session, _device_ids(session, dataset))
    measurements = repository.measurement_rows(session, dataset, with_samples=full)
    ops = repository.op_rows(session, [m.measurement_id for m in measurements]) if full else []
    canaries: list[CanaryRow] = []
    limit_pct = None
    if dataset.source == DatasetSource.campaign and dataset.config:
        limit_pct = CanaryLimits.of(dataset).limit_pct
        canaries, measurements = _with_canaries(session, dataset, measurements, limit_pct)
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
        canaries=canaries,
        canary_limit_pct=limit_pct,
    )


@dataclass(frozen=True)
class Export:
    data: bytes
    media_type: str
    filename: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        if self.filename is None:
            return {}
        name = self.filename.replace('"', "")
        return {"Content-Disposition": f'attachment; filename="{name}"'}


def export_dataset(session: Session, dataset_id: str, format: DatasetFormat) -> Export:
    """What is measured so far: ``latbench`` (a zip of one pickle per device, latency in
    seconds), ``json`` (the same as JSON), ``csv``, or ``parquet`` (a zip of tables + README)."""
    dataset = get_dataset(session, dataset_id)
    dump = dataset_dump(session, dataset, full=format == DatasetFormat.parquet)
    if format == DatasetFormat.csv:
        return Export(write_csv(dump)["measurements.csv"], "text/csv")
    if format == DatasetFormat.parquet:
        files = write_parquet(dump)
    else:
        files = write_latbench(dump, as_json=format == DatasetFormat.json)
        files["README.md"] = datasheet(dump).encode()
    files[METADATA] = json.dumps(dump.metadata(), indent=2).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in sorted(files.items()):
            archive.writestr(name, data)
    return Export(buffer.getvalue(), "application/zip", f"{dataset.name}-{format.value}.zip")


def _with_canaries(
    session: Session, dataset: Dataset, rows: list[MeasurementRow], limit_pct: float
) -> tuple[list[CanaryRow], list[MeasurementRow]]:
    """The canaries that bound each device's rows, and the rows with their window's drift."""
    identity = stored_config(dataset.config or {}).identity_key()
    by_device: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        by_device[row.device_id].append(i)
    out = list(rows)
    found: list[CanaryRow] = []
    for device_id, indices in by_device.items():
        at = [datetime.fromisoformat(rows[i].created_at) for i in indices]
        points = canary.around(session, device_id, identity, min(at), max(at))
        windows = canary_service.windows(points, at)
        for i, drift, scale in zip(indices, windows.drift_pct, windows.scale, strict=True):
            if drift is not None and scale is not None:
                out[i] = replace(
                    rows[i],
                    canary={
                        "canary": "drifted" if abs(drift) > limit_pct else "ok",
                        "canary_drift_pct": drift,
                        "canary_scale": scale,
                        "adjusted_ms": rows[i].latency_ms / scale,
                    },
                )
        found += [
            CanaryRow(
                device_id,
                p.measured_at.isoformat(),
                p.median_ms,
                p.ci_low_ms,
                p.ci_high_ms,
                p.verdict,
            )
            for p in points
        ]
    return found, out
