"""The predictor registry: every trained predictor is a version of its device + runtime, with
its artifact (and scatter plot) in the blob store, what it was trained on and its held-out
metrics. One version per scope (device + runtime + space and its parameters) is current: the
one ``auto`` predictions use. A registration becomes current when the caller says so, or by the
rule (``becomes_current``): none is, or its cross-validated error is lower than the current's."""

from __future__ import annotations

import logging
import math
import uuid
from typing import Any

from sqlalchemy.orm import Session

from latlab.latency_model import LatencyModel, read_artifact
from latlab.schemas import Deleted, DeletedKind, PredictorOut
from latlab.server import blob_ledger
from latlab.server.blobstore import BlobStore
from latlab.server.config import Settings
from latlab.server.db import by_id_or_prefix, utcnow
from latlab.server.devices.service import get_device
from latlab.server.errors import InvalidInput
from latlab.server.models import repository as models
from latlab.server.predict.sources import Source
from latlab.server.registry import repository
from latlab.server.registry.repository import Scope
from latlab.server.tables import Predictor
from latlab.server.uploads import scratch_file
from latlab.spaces import get_space

__all__ = [
    "becomes_current",
    "delete_predictor",
    "get_predictor",
    "list_predictors",
    "make_current",
    "predictor_out",
    "predictor_source",
    "predictor_sources",
    "register_predictor",
    "validated_error",
]

log = logging.getLogger(__name__)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _store(blobs: BlobStore, settings: Settings, data: bytes) -> str:
    with scratch_file(settings) as path:
        path.write_bytes(data)
        return blobs.put_file(path)


def register_predictor(
    session: Session,
    blobs: BlobStore,
    settings: Settings,
    *,
    artifact: bytes,
    plot_png: bytes | None,
    device_id: str,
    runtime: str,
    space: str | None,
    space_params: dict[str, int],
    training: dict[str, Any],
    current: bool | None = None,
) -> PredictorOut:
    """``current``: None applies the rule (``becomes_current``); True or False is the caller's
    choice."""
    device = get_device(session, device_id)
    model = read_artifact(artifact)  # any registered kind; the header names it
    report = model.describe()
    if space is not None:
        get_space(space, **space_params)
    if plot_png is not None and not plot_png.startswith(PNG_SIGNATURE):
        raise InvalidInput("the plot is not a PNG image")
    latest = repository.latest_version(session, device.id, runtime)
    scope = Scope(device.id, runtime, space, dict(space_params))
    metrics = report.get("metrics") or {}
    if current is None:
        current = becomes_current(repository.current_version(session, scope), metrics)
    if current:
        repository.clear_current(session, scope)
    row = Predictor(
        id=uuid.uuid4().hex,
        device_id=device.id,
        kind=model.kind,
        runtime=runtime,
        space=space,
        space_params=space_params,
        version=latest + 1,
        current=current,
        training={**training, "config": report.get("training_config", training.get("config"))},
        metrics=metrics,
        artifact_sha256=_store(blobs, settings, artifact),
        artifact_bytes=len(artifact),
        plot_sha256=_store(blobs, settings, plot_png) if plot_png is not None else None,
        created_at=utcnow(),
    )
    repository.add(session, row)
    return predictor_out(row)


def validated_error(metrics: dict[str, Any]) -> float | None:
    """A version's cross-validated mean relative error (``metrics.cv.mape``), if it reports
    one: what registrations are compared by."""
    cv = metrics.get("cv")
    mape = cv.get("mape") if isinstance(cv, dict) else None
    return float(mape) if isinstance(mape, int | float) and math.isfinite(mape) else None


def becomes_current(current: Predictor | None, metrics: dict[str, Any]) -> bool:
    """Whether a new version with these metrics should serve ``auto`` predictions instead of
    ``current`` (its scope's current version): when none is, or the new one's cross-validated
    error is lower; when either reports none, the newer one (the registrant's intent)."""
    if current is None:
        return True
    theirs, ours = validated_error(current.metrics or {}), validated_error(metrics)
    if theirs is None or ours is None:
        return True
    return ours < theirs


def predictor_out(row: Predictor) -> PredictorOut:
    return PredictorOut(
        id=row.id,
        device_id=row.device_id,
        kind=row.kind,
        runtime=row.runtime,
        space=row.space,
        space_params=row.space_params,
        version=row.version,
        current=row.current,
        training=row.training,
        metrics=row.metrics,
        artifact_bytes=row.artifact_bytes,
        has_plot=row.plot_sha256 is not None,
        created_at=row.created_at,
    )


def get_predictor(session: Session, predictor_id: str) -> Predictor:
    return by_id_or_prefix(session, predictor_id, repository.get, Predictor.id, "predictor")


def list_predictors(session: Session, device_id: str | None) -> list[PredictorOut]:
    return [predictor_out(p) for p in repository.listed(session, device_id)]


def make_current(session: Session, predictor_id: str) -> PredictorOut:
    row = get_predictor(session, predictor_id)
    repository.clear_current(session, Scope.of(row))
    row.current = True
    session.flush()
    return predictor_out(row)


def delete_predictor(session: Session, blobs: BlobStore, predictor_id: str) -> Deleted:
    """Delete the version and its artifact and plot (after the commit, unless another row
    names the same bytes). If it was current, the newest older version of its scope
    becomes current, else none is (predictions fall back to the device's other
    sources). Its version number may be given again: the next upload after the highest
    version's delete takes that number."""
    row = get_predictor(session, predictor_id)
    made_current = 0
    if row.current:
        previous = repository.newest_before(session, Scope.of(row), row.version)
        if previous is not None:
            previous.current = True
            made_current = 1
        now_current = previous
    else:
        now_current = repository.current_version(session, Scope.of(row))
    n = repository.delete_predictor(session, row.id)
    session.flush()
    unused = 0
    for sha256 in dict.fromkeys(s for s in (row.artifact_sha256, row.plot_sha256) if s):
        if not repository.names_blob(session, sha256) and models.get(session, sha256) is None:
            blob_ledger.note_unused(session, blobs, sha256)  # deleted once this commits
            unused += 1
    log.info(
        "predictor deleted",
        extra={
            "predictor_id": row.id,
            "device_id": row.device_id,
            "current_predictor": now_current.id if now_current else None,
        },
    )
    return Deleted(
        kind=DeletedKind.predictor,
        id=row.id,
        removed={"predictors": n, "blobs": unused},
        changed={"predictors_made_current": made_current},
        current_predictor=now_current.id if now_current is not None else None,
    )


def _source(row: Predictor) -> Source:
    sha = row.artifact_sha256

    def load(blobs: BlobStore) -> LatencyModel:
        with blobs.open(sha) as f:
            return read_artifact(f.read())

    return Source(
        id=row.id,
        kind=row.kind,
        device_id=row.device_id,
        load=load,
        space=row.space,
        space_params=dict(row.space_params),
    )


def predictor_source(session: Session, predictor_id: str) -> Source | None:
    row = repository.get(session, predictor_id)
    return _source(row) if row is not None else None


def predictor_sources(session: Session, device_id: str) -> list[Source]:
    """The device's current predictors (one per runtime), newest first."""
    return [_source(row) for row in repository.current_of(session, device_id)]
