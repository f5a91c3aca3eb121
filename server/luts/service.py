"""LUT requests: checked and stored here, built by the background builder (``builder.py``),
read back with their progress, served as prediction sources. The SQL is in ``repository.py``.
"""

from __future__ import annotations

import logging
import uuid

from sqlalchemy.orm import Session

from latlab.latency_model import LatencyModel
from latlab.lut.model import LutModel
from latlab.lut.table import LookupTable
from latlab.runtimes import RuntimeConfig, runtime_spec, stored_config
from latlab.schemas import (
    Deleted,
    DeletedKind,
    JobState,
    LutCalibration,
    LutCreate,
    LutOut,
    LutProgress,
    LutSource,
    LutState,
)
from latlab.server.blobstore import BlobStore
from latlab.server.datasets.service import get_dataset
from latlab.server.db import by_id_or_prefix, utcnow
from latlab.server.devices.service import get_device, job_device
from latlab.server.errors import Conflict, InvalidInput, NotFound
from latlab.server.jobs import repository as jobs
from latlab.server.jobs.service import device_can_run
from latlab.server.luts import repository
from latlab.server.luts.repository import Whole
from latlab.server.measurements import repository as measurements
from latlab.server.models import repository as models
from latlab.server.predict.sources import Source
from latlab.server.tables import Device, Lut
from latlab.spaces import get_space
from latlab.untrusted import excerpt

__all__ = [
    "create_lut",
    "delete_lut",
    "get_lut",
    "list_luts",
    "lookup_table",
    "lut_out",
    "lut_source",
    "lut_sources",
    "measured",
]

log = logging.getLogger(__name__)

#: Whole models a LUT is calibrated (and a measured-ops LUT built) on, newest first.
MAX_MODELS = 500


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
    stored = models.existing_ids(session, body.model_ids or [])
    missing = [m for m in body.model_ids or [] if m not in stored]
    if missing:
        raise NotFound(f"no model {excerpt(missing[0])}")
    if body.dataset_id is not None:
        get_dataset(session, body.dataset_id)
    if body.source == LutSource.micro_models:
        if body.space is None and body.model_ids is None:
            raise InvalidInput("a micro-model LUT needs a space (with archs or n) or model_ids")
    elif not measured(
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
    repository.add(session, lut)
    log.info("lut requested", extra={"lut_id": lut.id, "device_id": device.id})
    return lut_out(session, lut)


def _device(session: Session, device_id: str) -> Device:
    device = get_device(session, device_id)  # an id or a name
    if device.revoked_at is not None:
        raise NotFound(f"no device {excerpt(device_id)}")
    return device


def get_lut(session: Session, lut_id: str) -> Lut:
    return by_id_or_prefix(session, lut_id, repository.get, Lut.id, "LUT")


def delete_lut(session: Session, lut_id: str) -> Deleted:
    """Delete the LUT: its record and micro-model rows, in one transaction, with the
    micro-model jobs no other LUT or dataset shares, whatever their state (an agent timing one
    loses its lease at its next heartbeat), and their measurements and per-op rows: they time
    one kernel, nothing but this LUT reads them, and kept they would count as whole models in
    other LUTs' calibration. The micro-models stay (models are deleted as models). A LUT still
    being built may be deleted: the builder's step in progress is waited for."""
    lut = repository.lock(session, get_lut(session, lut_id).id)  # an id or a unique prefix
    if lut is None:
        raise NotFound(f"no LUT {excerpt(lut_id)}")
    kernel_jobs = repository.delete_kernels(session, lut.id)
    own = jobs.lock_unreferenced(session, kernel_jobs)  # a result being stored is waited for
    gone = measurements.delete_of_jobs(session, own)
    n_jobs = jobs.delete_ids(session, own)
    n = repository.delete_lut(session, lut.id)
    log.info("lut deleted", extra={"lut_id": lut.id, "jobs": n_jobs})
    return Deleted(
        kind=DeletedKind.lut,
        id=lut.id,
        removed={
            "luts": n,
            "lut_kernels": len(kernel_jobs),
            "jobs": n_jobs,
            "measurements": gone.measurements,
            "op_measurements": gone.op_measurements,
        },
    )


def list_luts(session: Session, device_id: str | None = None) -> list[LutOut]:
    return [lut_out(session, lut) for lut in repository.listed(session, device_id)]


def _source(row: Lut) -> Source:
    def load(_: BlobStore) -> LatencyModel:
        return LutModel(lookup_table(row))  # Conflict if it is not ready

    # a LUT predicts any graph: archs of any space and stored models alike
    return Source(id=row.id, kind=LutModel.kind, device_id=row.device_id, load=load, any_graph=True)


def lut_source(session: Session, lut_id: str) -> Source | None:
    """The LUT as a prediction source (loading one that is not ready is a ``Conflict``)."""
    row = repository.get(session, lut_id)
    return _source(row) if row is not None else None


def lut_sources(session: Session, device_id: str) -> list[Source]:
    """The device's newest ready LUT (the one that answers for it)."""
    row = repository.newest_ready(session, device_id)
    return [_source(row)] if row is not None else []


def lookup_table(lut: Lut) -> LookupTable:
    if lut.state != LutState.ready.value or lut.table is None:
        raise Conflict(f"LUT {lut.id} is {lut.state}, not ready")
    return LookupTable.from_json(lut.table)


def lut_out(session: Session, lut: Lut) -> LutOut:
    table = lut.table or {}
    entries = len(table.get("entries", {}))
    if lut.source == LutSource.micro_models:
        states = repository.job_states(session, lut.id)
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


def measured(
    session: Session,
    device_id: str,
    config: RuntimeConfig,
    model_ids: list[str] | None,
    dataset_id: str | None,
    *,
    with_ops: bool = False,
    limit: int = MAX_MODELS,
) -> list[Whole]:
    """Whole models measured on the device with the config's runtime identity, newest first
    (micro-models left out); ``with_ops``: only those with per-op rows."""
    return repository.measured_models(
        session,
        device_id,
        config.identity_key(),
        model_ids,
        dataset_id,
        with_ops=with_ops,
        limit=limit,
    )
