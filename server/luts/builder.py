"""The LUT builder: the background step that turns a requested LUT into a ready one.

``measured-ops``: the per-op rows of models already measured on the device with the LUT's
runtime config are attributed to kernels and aggregated (lut.build). ``micro-models``: every
unique kernel of a space sample (or of given models) is cut out into a micro-model, uploaded
(deduplicated) and queued on the device like any job; when every job has finished the entries
are assembled. Both are calibrated on whole models measured on the device. All state is in
the database: a restarted server resumes a LUT where it stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from latlab.errors import LatlabError
from latlab.export.onnx import to_onnx
from latlab.graph import OpGraph
from latlab.lut.build import MicroTiming, ProfiledModel, build_from_micro, build_from_profiles
from latlab.lut.errors import LutError
from latlab.lut.micro import unique_kernels
from latlab.lut.table import LookupTable
from latlab.runtimes import rules_for, stored_config
from latlab.schemas import JobCreate, LutSource, LutState
from latlab.server.background import guarded
from latlab.server.blobstore import BlobStore
from latlab.server.config import Settings
from latlab.server.db import utcnow
from latlab.server.errors import ServerError
from latlab.server.jobs.service import create_job
from latlab.server.luts import repository
from latlab.server.luts.service import measured
from latlab.server.models.service import ModelLimits, model_graph, store_model
from latlab.server.tables import Lut, LutKernel, Measurement
from latlab.server.uploads import scratch_file
from latlab.spaces import get_space

__all__ = ["advance_next"]

log = logging.getLogger(__name__)

#: Archs sampled from the space when a micro-model LUT names neither ``archs`` nor ``n``.
DEFAULT_SAMPLE = 100
MICRO_SEED = 0


def advance_next(session: Session, blobs: BlobStore, settings: Settings) -> bool:
    """Build or prepare the oldest preparing LUT, else assemble one whose micro-models are all
    measured; False when there is nothing to do."""
    lut = repository.next_preparing(session)
    if lut is not None:
        if lut.source == LutSource.measured_ops:
            _guarded(session, lut, lambda: _finish(lut, _build_measured_ops(session, blobs, lut)))
        else:
            _guarded(session, lut, lambda: _queue_micro_models(session, blobs, settings, lut))
        return True
    measured_lut = next(
        (
            m
            for m in repository.measuring(session)
            if not repository.pending_micro_jobs(session, m.id)
        ),
        None,
    )
    if measured_lut is None:
        return False
    _guarded(
        session,
        measured_lut,
        lambda: _finish(measured_lut, _assemble_micro(session, blobs, measured_lut)),
    )
    return True


def _guarded(session: Session, lut: Lut, work: Callable[[], None]) -> None:
    """The LUT's work, its partial writes (micro-models, jobs) undone if it fails; the LUT
    failed at once for what its inputs cause, on the third time for anything else."""
    guarded(
        session,
        lut,
        work,
        lambda error: _fail(lut, error),
        (LatlabError, ServerError, KeyError, ValueError),
    )


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


def _build_measured_ops(session: Session, blobs: BlobStore, lut: Lut) -> LookupTable:
    config = stored_config(lut.config)
    spec = lut.spec
    wholes = measured(
        session, lut.device_id, config, spec.get("model_ids"), spec.get("dataset_id"), with_ops=True
    )
    ops = repository.profiles(session, [m.measurement_id for m in wholes])
    models = [
        ProfiledModel(model_graph(session, blobs, m.model_id), m.median_ms, ops[m.measurement_id])
        for m in wholes
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
    limits = ModelLimits.of(settings)
    rows = []
    for key, (kernel, graph) in micro.items():
        with scratch_file(settings, suffix=".onnx") as path:
            path.write_bytes(to_onnx(graph, seed=MICRO_SEED).SerializeToString())
            model, _ = store_model(session, blobs, path, f"kernel-{kernel.op_type}.onnx", limits)
        job = create_job(
            session,
            JobCreate(model_id=model.id, device_id=lut.device_id, config=config),
            settings.max_attempts,
        )
        rows.append(
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
    repository.add_kernels(session, rows)
    lut.state = LutState.measuring.value
    log.info("lut micro-models queued", extra={"lut_id": lut.id, "kernels": len(micro)})


def _micro_timing(session: Session, kernel: LutKernel, m: Measurement) -> tuple[MicroTiming, str]:
    """The kernel's time in its micro-model: the profiler's row(s) computing its first node
    when the runtime profiled it (a micro-model also runs layout conversions, and the runtime
    may leave apart what it fuses inside a network: an Add whose other input is a graph
    input), else the end-to-end median (the calibration takes out the per-call cost)."""
    anchored = repository.anchored_ops(session, m.id, kernel.anchor)
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
    for kernel, m in repository.measured_kernels(session, lut.id):
        timings[kernel.key], kind = _micro_timing(session, kernel, m)
        how[kind] = how.get(kind, 0) + 1
    if not timings:
        raise LutError("every micro-model failed on the device; see its jobs")
    config = stored_config(lut.config)
    spec = lut.spec
    whole = measured(session, lut.device_id, config, spec.get("model_ids"), spec.get("dataset_id"))
    calibration = [(model_graph(session, blobs, m.model_id), m.median_ms) for m in whole]
    failed = repository.kernel_count(session, lut.id) - len(timings)
    return build_from_micro(
        timings,
        rules_for(lut.rules),
        calibration,
        _meta(lut, micro_models=len(timings), failed_micro_models=failed, micro_timing=how),
    )
