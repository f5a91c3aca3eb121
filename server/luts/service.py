"""Lookup tables: requested, then built by the background worker, from stored measurements.

``measured-ops``: the per-op rows of models already measured on the device with the LUT's
runtime config are attributed to kernels and aggregated (lut.build). ``micro-models``: every
unique kernel of a space sample (or of given models) is cut out into a micro-model, uploaded
(deduplicated) and queued on the device like any job; when every job has finished the entries
are assembled. Both are calibrated on whole models measured on the device. All state is in
the database: a restarted server resumes a LUT where it stopped.
"""

from __future__ import annotations

import logging
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from latlab.errors import LatlabError
from latlab.export.onnx import to_onnx
from latlab.graph import OpGraph
from latlab.latency_model import LatencyModel
from latlab.lut.build import MicroTiming, ProfiledModel, build_from_micro, build_from_profiles
from latlab.lut.errors import LutError
from latlab.lut.micro import unique_kernels
from latlab.lut.model import LutModel
from latlab.lut.table import LookupTable
from latlab.runtimes import RuntimeConfig, rules_for, runtime_spec, stored_config
from latlab.schemas import (
    JobCreate,
    JobState,
    LutCalibration,
    LutCreate,
    LutOut,
    LutProgress,
    LutSource,
    LutState,
    MeasurementSource,
)
from latlab.server.blobstore import BlobStore
from latlab.server.config import Settings
from latlab.server.datasets.service import get_dataset
from latlab.server.db import utcnow
from latlab.server.devices.service import get_device, job_device
from latlab.server.errors import Conflict, InvalidInput, NotFound
from latlab.server.jobs.service import create_job, device_can_run
from latlab.server.models.service import model_graph, store_model
from latlab.server.predict.sources import Source
from latlab.server.tables import (
    DatasetArch,
    Device,
    Job,
    Lut,
    LutKernel,
    Measurement,
    Model,
    OpMeasurement,
)
from latlab.spaces import get_space

__all__ = [
    "advance_next",
    "create_lut",
    "get_lut",
    "list_luts",
    "lookup_table",
    "lut_out",
    "lut_source",
    "lut_sources",
]

log = logging.getLogger(__name__)

#: Archs sampled from the space when a micro-model LUT names neither ``archs`` nor ``n``.
DEFAULT_SAMPLE = 100
#: Whole models a LUT is calibrated (and a measured-ops LUT built) on, newest first.
MAX_MODELS = 500
MICRO_SEED = 0
#: Ids per ``IN (...)`` query.
IN_CHUNK = 500


# --------------------------------------------------------------------------- requests


def create_lut(session: Session, body: LutCreate) -> LutOut:
    config = body.config
    runtime = runtime_spec(config.runtime)
    if not runtime.builds_luts or runtime.fusion is None:
        raise InvalidInput(
            f"LUTs are built from ONNX per-op profiles; {config.runtime} "
            f"({runtime.model_format.value}) devices get latency predictions from a GCN "
            "trained on a campaign measured there"
        )
    rules = runtime.fusion
    if body.source == LutSource.micro_models:
        device = job_device(session, body.device_id)
        if not device_can_run(device.descriptor, config):
            raise InvalidInput(
                f"device {device.id} cannot run {config.runtime} with {config.provider}"
            )
    else:
        device = _device(session, body.device_id)
    if body.space is not None:
        space = get_space(body.space, **body.space_params)
        for arch in body.archs or []:
            space.parse(arch)
    elif body.archs is not None or body.n is not None:
        raise InvalidInput("archs and n need a space")
    for model_id in body.model_ids or []:
        if model_id not in _known_models(session, [model_id]):
            raise NotFound(f"no model {model_id!r}")
    if body.dataset_id is not None:
        get_dataset(session, body.dataset_id)
    if body.source == LutSource.micro_models:
        if body.space is None and body.model_ids is None:
            raise InvalidInput("a micro-model LUT needs a space (with archs or n) or model_ids")
    elif not _measured(
        session, device.id, config, body.model_ids, body.dataset_id, with_ops=True, limit=1
    ):
        raise InvalidInput(
            f"device {device.id} has no measurement with per-op rows for "
            f"{config.describe()}: measure models first "
            "(profile_ops on), or build from micro-models"
        )
    lut = Lut(
        id=uuid.uuid4().hex,
        name=body.name or f"{device.name}-{body.source.value}",
        device_id=device.id,
        source=body.source.value,
        rules=rules.name,
        config=config.model_dump(mode="json"),
        spec=body.model_dump(mode="json", exclude={"name", "device_id", "source", "config"}),
        space=body.space,
        state=LutState.preparing.value,
        created_at=utcnow(),
    )
    session.add(lut)
    session.flush()
    log.info("lut requested", extra={"lut_id": lut.id, "device_id": device.id})
    return lut_out(session, lut)


def _device(session: Session, device_id: str) -> Device:
    device = get_device(session, device_id)  # an id or a name
    if device.revoked_at is not None:
        raise NotFound(f"no device {device_id!r}")
    return device


def _known_models(session: Session, model_ids: Sequence[str]) -> set[str]:
    return set(session.scalars(select(Model.id).where(Model.id.in_(model_ids))))


def get_lut(session: Session, lut_id: str) -> Lut:
    lut = session.get(Lut, lut_id)
    if lut is None:
        raise NotFound(f"no LUT {lut_id!r}")
    return lut


def list_luts(session: Session, device_id: str | None = None) -> list[LutOut]:
    query = select(Lut).order_by(Lut.created_at)
    if device_id is not None:
        query = query.where(Lut.device_id == device_id)
    return [lut_out(session, lut) for lut in session.scalars(query)]


def _source(row: Lut) -> Source:
    def load(_: BlobStore) -> LatencyModel:
        return LutModel(lookup_table(row))  # Conflict if it is not ready

    # a LUT predicts any graph: archs of any space and stored models alike
    return Source(id=row.id, kind=LutModel.kind, device_id=row.device_id, load=load, any_graph=True)


def lut_source(session: Session, lut_id: str) -> Source | None:
    """The LUT as a prediction source (loading one that is not ready is a ``Conflict``)."""
    row = session.get(Lut, lut_id)
    return _source(row) if row is not None else None


def lut_sources(session: Session, device_id: str) -> list[Source]:
    """The device's newest ready LUT (the one that answers for it)."""
    row = session.scalar(
        select(Lut)
        .where(Lut.device_id == device_id, Lut.state == LutState.ready.value)
        .order_by(Lut.built_at.desc(), Lut.id)
        .limit(1)
    )
    return [_source(row)] if row is not None else []


def lookup_table(lut: Lut) -> LookupTable:
    if lut.state != LutState.ready.value or lut.table is None:
        raise Conflict(f"LUT {lut.id} is {lut.state}, not ready")
    return LookupTable.from_json(lut.table)


def lut_out(session: Session, lut: Lut) -> LutOut:
    table = lut.table or {}
    entries = len(table.get("entries", {}))
    if lut.source == LutSource.micro_models:
        states = dict(
            session.execute(
                select(Job.state, func.count())
                .join(LutKernel, LutKernel.job_id == Job.id)
                .where(LutKernel.lut_id == lut.id)
                .group_by(Job.state)
            ).all()
        )
        kernels = sum(states.values())
        done = states.get(JobState.done.value, 0)
        failed = states.get(JobState.failed.value, 0) + states.get(JobState.cancelled.value, 0)
        progress = LutProgress(
            kernels=kernels, done=done, failed=failed, pending=kernels - done - failed
        )
    else:
        progress = LutProgress(kernels=entries, done=entries, failed=0, pending=0)
    calibration = table.get("calibration")
    return LutOut(
        id=lut.id,
        name=lut.name,
        device_id=lut.device_id,
        source=LutSource(lut.source),
        state=LutState(lut.state),
        config=stored_config(lut.config),
        rules=lut.rules,
        space=lut.space,
        progress=progress,
        entries=entries,
        calibration=LutCalibration.model_validate(calibration) if calibration else None,
        error=lut.error,
        created_at=lut.created_at,
        built_at=lut.built_at,
    )


# --------------------------------------------------------------------------- the background step


def advance_next(session: Session, blobs: BlobStore, settings: Settings) -> bool:
    """Build or prepare the oldest preparing LUT, else assemble one whose micro-models are all
    measured; False when there is nothing to do."""
    lut = session.scalar(
        select(Lut)
        .where(Lut.state == LutState.preparing.value)
        .order_by(Lut.created_at)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    if lut is not None:
        try:
            if lut.source == LutSource.measured_ops:
                _finish(lut, _build_measured_ops(session, blobs, lut))
            else:
                _queue_micro_models(session, blobs, settings, lut)
        except (LatlabError, KeyError, ValueError) as exc:
            _fail(lut, str(exc))
        return True
    for lut in session.scalars(
        select(Lut).where(Lut.state == LutState.measuring.value).with_for_update(skip_locked=True)
    ):
        if _pending_micro_jobs(session, lut.id):
            continue
        try:
            _finish(lut, _assemble_micro(session, blobs, lut))
        except (LatlabError, KeyError, ValueError) as exc:
            _fail(lut, str(exc))
        return True
    return False


def _finish(lut: Lut, table: LookupTable) -> None:
    lut.table = table.to_json()
    lut.state = LutState.ready.value
    lut.built_at = utcnow()
    log.info("lut ready", extra={"lut_id": lut.id, "entries": len(table.entries)})


def _fail(lut: Lut, error: str) -> None:
    lut.state = LutState.failed.value
    lut.error = error
    log.warning("lut failed", extra={"lut_id": lut.id, "error": error})


def _meta(lut: Lut, **extra: Any) -> dict[str, Any]:
    return {
        "lut_id": lut.id,
        "device_id": lut.device_id,
        "config": lut.config,
        "space": lut.space,
        **extra,
    }


@dataclass(frozen=True)
class _Whole:
    """A whole model measured on the device: enough to calibrate on or to build from."""

    measurement_id: int
    model_id: str
    median_ms: float


def _measured(
    session: Session,
    device_id: str,
    config: RuntimeConfig,
    model_ids: Sequence[str] | None,
    dataset_id: str | None,
    *,
    with_ops: bool = False,
    limit: int = MAX_MODELS,
) -> list[_Whole]:
    """Whole models measured on the device with the same runtime identity, newest first
    (micro-models of any LUT left out); ``with_ops``: only those with per-op rows."""
    query = select(Measurement.id, Measurement.model_id, Measurement.median_ms).where(
        Measurement.device_id == device_id,
        Measurement.runtime_identity == config.identity_key(),
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
    return [_Whole(m_id, str(model_id), median_ms) for m_id, model_id, median_ms in rows]


def _build_measured_ops(session: Session, blobs: BlobStore, lut: Lut) -> LookupTable:
    config = stored_config(lut.config)
    spec = lut.spec
    measured = _measured(
        session, lut.device_id, config, spec.get("model_ids"), spec.get("dataset_id"), with_ops=True
    )
    ops: dict[int, list[tuple[float, list[str]]]] = {m.measurement_id: [] for m in measured}
    for start in range(0, len(measured), IN_CHUNK):
        chunk = [m.measurement_id for m in measured[start : start + IN_CHUNK]]
        for m_id, dur_us, sources in session.execute(
            select(OpMeasurement.measurement_id, OpMeasurement.dur_us, OpMeasurement.source_nodes)
            .where(OpMeasurement.measurement_id.in_(chunk))
            .order_by(OpMeasurement.measurement_id, OpMeasurement.seq)
        ):
            ops[m_id].append((dur_us, list(sources)))
    models = [
        ProfiledModel(model_graph(session, blobs, m.model_id), m.median_ms, ops[m.measurement_id])
        for m in measured
    ]
    if not models:
        raise LutError("no measurement with per-op rows for this device and runtime config")
    return build_from_profiles(models, rules_for(lut.rules), _meta(lut, models=len(models)))


def _kernel_source_graphs(session: Session, blobs: BlobStore, lut: Lut) -> list[OpGraph]:
    spec = lut.spec
    graphs: list[OpGraph] = []
    if lut.space is not None:
        space = get_space(lut.space, **spec.get("space_params", {}))
        if spec.get("archs"):
            archs = [space.parse(a) for a in spec["archs"]]
        else:
            archs = space.sample(spec.get("n") or DEFAULT_SAMPLE, spec.get("seed", 0))
        graphs += [space.graph(a) for a in archs]
    graphs += [model_graph(session, blobs, m) for m in spec.get("model_ids") or []]
    return graphs


def _queue_micro_models(session: Session, blobs: BlobStore, settings: Settings, lut: Lut) -> None:
    micro = unique_kernels(_kernel_source_graphs(session, blobs, lut), rules_for(lut.rules))
    if not micro:
        raise LutError("the given archs or models have no kernel that costs time")
    config = stored_config(lut.config)
    work_dir = settings.upload_dir
    work_dir.mkdir(parents=True, exist_ok=True)
    for key, (kernel, graph) in micro.items():
        with tempfile.NamedTemporaryFile(dir=work_dir, suffix=".onnx", delete=False) as tmp:
            tmp.write(to_onnx(graph, seed=MICRO_SEED).SerializeToString())
        model, _ = store_model(session, blobs, Path(tmp.name), f"kernel-{kernel.op_type}.onnx")
        job = create_job(
            session,
            JobCreate(model_id=model.id, device_id=lut.device_id, config=config),
            settings.max_attempts,
        )
        session.add(
            LutKernel(
                lut_id=lut.id,
                key=key,
                op_type=kernel.op_type,
                anchor=kernel.nodes[0],
                flops=kernel.cost.flops,
                bytes_moved=kernel.cost.bytes_moved,
                model_id=model.id,
                job_id=job.id,
            )
        )
    lut.state = LutState.measuring.value
    session.flush()
    log.info("lut micro-models queued", extra={"lut_id": lut.id, "kernels": len(micro)})


def _pending_micro_jobs(session: Session, lut_id: str) -> int:
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


def _micro_timing(session: Session, kernel: LutKernel, m: Measurement) -> tuple[MicroTiming, str]:
    """The kernel's time in its micro-model: the profiler's row(s) computing its first node
    when the runtime profiled it (a micro-model also runs layout conversions, and the runtime
    may leave apart what it fuses inside a network: an Add whose other input is a graph
    input), else the end-to-end median (the calibration takes out the per-call cost)."""
    anchored = [
        (dur_us, n)
        for dur_us, n, sources in session.execute(
            select(OpMeasurement.dur_us, OpMeasurement.n, OpMeasurement.source_nodes).where(
                OpMeasurement.measurement_id == m.id
            )
        )
        if kernel.anchor in sources
    ]
    if anchored:
        median_ms, iqr_ms = sum(d for d, _ in anchored) / 1e3, 0.0
        n, kind = min(n for _, n in anchored), "profiled-kernel"
    else:
        median_ms, iqr_ms, n, kind = m.median_ms, m.iqr_ms or 0.0, m.n, "end-to-end"
    timing = MicroTiming(kernel.op_type, kernel.flops, kernel.bytes_moved, median_ms, iqr_ms, n)
    return timing, kind


def _assemble_micro(session: Session, blobs: BlobStore, lut: Lut) -> LookupTable:
    timings: dict[str, MicroTiming] = {}
    how: dict[str, int] = {}
    rows = session.execute(
        select(LutKernel, Measurement)
        .join(Measurement, Measurement.job_id == LutKernel.job_id)
        .where(LutKernel.lut_id == lut.id)
    )
    for kernel, m in rows:
        timings[kernel.key], kind = _micro_timing(session, kernel, m)
        how[kind] = how.get(kind, 0) + 1
    if not timings:
        raise LutError("every micro-model failed on the device; see its jobs")
    config = stored_config(lut.config)
    spec = lut.spec
    whole = _measured(session, lut.device_id, config, spec.get("model_ids"), spec.get("dataset_id"))
    calibration = [(model_graph(session, blobs, m.model_id), m.median_ms) for m in whole]
    failed = (session.scalar(select(func.count()).where(LutKernel.lut_id == lut.id)) or 0) - len(
        timings
    )
    return build_from_micro(
        timings,
        rules_for(lut.rules),
        calibration,
        _meta(lut, micro_models=len(timings), failed_micro_models=failed, micro_timing=how),
    )
