"""Models (ONNX or TFLite, told apart by the TFLite file identifier): validated on upload,
stored once by sha256, summarised."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from latlab.errors import ModelInvalid
from latlab.graph import OpGraph
from latlab.onnx_summary import MAX_NODES, load_onnx, summarize_onnx
from latlab.runtimes import ModelFormat
from latlab.schemas import Deleted, DeletedKind, ModelOut, ModelSummary
from latlab.server import blob_ledger
from latlab.server.blobstore import BlobStore
from latlab.server.config import Settings
from latlab.server.datasets import repository as datasets
from latlab.server.db import by_id_or_prefix, utcnow
from latlab.server.errors import Conflict, InvalidInput, NotFound
from latlab.server.jobs import repository as jobs
from latlab.server.luts import repository as luts
from latlab.server.measurements import repository as measurements
from latlab.server.models import repository
from latlab.server.registry import repository as predictors
from latlab.server.tables import Model
from latlab.tflite_summary import is_tflite, summarize_tflite
from latlab.untrusted import excerpt

__all__ = [
    "ModelLimits",
    "delete_model",
    "get_model",
    "list_models",
    "model_graph",
    "model_out",
    "store_model",
]

log = logging.getLogger(__name__)

#: Parsed graphs of stored models, by sha256 (the bytes behind an id never change).
GRAPH_CACHE_SIZE = 1024
_graphs: OrderedDict[str, OpGraph] = OrderedDict()
_graphs_lock = threading.Lock()


@dataclass(frozen=True)
class ModelLimits:
    """What an uploaded model may be (``Settings``: max_model_nodes, max_tensor_bytes)."""

    max_nodes: int = MAX_NODES
    max_tensor_bytes: int = 4 * 1024**3

    @classmethod
    def of(cls, settings: Settings) -> ModelLimits:
        return cls(max_nodes=settings.max_model_nodes, max_tensor_bytes=settings.max_tensor_bytes)


def store_model(
    session: Session,
    blobs: BlobStore,
    path: Path,
    filename: str,
    limits: ModelLimits = ModelLimits(),
) -> tuple[ModelOut, bool]:
    """Validate the uploaded file and store it; returns (model, created). The file is consumed.
    Nothing is stored for a file that fails validation or exceeds ``limits``."""
    data = path.read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    existing = repository.get(session, sha256)
    if existing is not None:
        path.unlink(missing_ok=True)
        return model_out(existing), False
    model_format = ModelFormat.tflite if is_tflite(data) else ModelFormat.onnx
    summary = (  # ModelInvalid, a LatlabError, answers 422
        summarize_tflite(data, max_nodes=limits.max_nodes)
        if model_format is ModelFormat.tflite
        else summarize_onnx(load_onnx(data, max_nodes=limits.max_nodes))
    )
    if (summary.largest_tensor_bytes or 0) > limits.max_tensor_bytes:
        raise InvalidInput(
            f"tensor {summary.largest_tensor!r} would take {summary.largest_tensor_bytes:,} bytes; "
            f"the limit is {limits.max_tensor_bytes:,} (LATLAB_MAX_TENSOR_BYTES)"
        )
    del data
    model = Model(
        id=sha256,
        format=model_format.value,
        filename=filename[:255],
        size_bytes=path.stat().st_size,
        summary=summary.model_dump(mode="json"),
        created_at=utcnow(),
    )
    repository.add(session, model)  # the row first: if the blob write fails, it rolls back
    stored = blobs.put_file(path)
    blob_ledger.note(session, blobs, stored)  # deleted again if the transaction rolls back
    assert stored == sha256, "blob store hashed different bytes"
    return model_out(model), True


def model_out(model: Model) -> ModelOut:
    return ModelOut(
        id=model.id,
        format=ModelFormat(model.format),
        filename=model.filename,
        size_bytes=model.size_bytes,
        summary=ModelSummary.model_validate(model.summary),
        created_at=model.created_at,
    )


def get_model(session: Session, model_id: str) -> Model:
    return by_id_or_prefix(session, model_id, repository.get, Model.id, "model")


def list_models(
    session: Session, limit: int, offset: int, newest_first: bool = False
) -> list[Model]:
    return repository.listed(session, limit, offset, newest_first)


def count_models(session: Session) -> int:
    return repository.counted(session)


def model_graph(session: Session, blobs: BlobStore, model_id: str) -> OpGraph:
    """The stored model as an OpGraph (its node names as the agent's profiler names them)."""
    with _graphs_lock:
        if model_id in _graphs:
            _graphs.move_to_end(model_id)
            return _graphs[model_id]
    model = get_model(session, model_id)
    if model.format != ModelFormat.onnx.value:
        raise InvalidInput(
            f"model {model_id} is {model.format}: graphs (LUT keys, GCN features) are read from "
            "ONNX models; upload the ONNX export of the same network"
        )
    with blobs.open(model.id) as f:
        data = f.read()
    try:
        graph = OpGraph.from_onnx(load_onnx(data))
    except ModelInvalid as exc:
        raise InvalidInput(f"model {model_id}: {exc}") from exc
    with _graphs_lock:
        _graphs[model_id] = graph
        while len(_graphs) > GRAPH_CACHE_SIZE:
            _graphs.popitem(last=False)
    return graph


#: Users of a model named in a refusal, per kind (then "and N more").
NAMED_USERS = 5


def delete_model(
    session: Session,
    blobs: BlobStore,
    model_id: str,
    *,
    force: bool = False,
    canary_ids: Collection[str] = (),
) -> Deleted:
    """Delete the model with its jobs (any state: an agent timing one loses its lease at its
    next heartbeat), their measurements and per-op rows, and its file (after the commit).

    A model a dataset or a LUT uses is refused (409, naming them) unless ``force``; then the
    datasets' archs exported as it lose it and their entries (counted unprepared, never
    prepared again) and the LUTs lose its micro-model rows (a built table is kept whole; one
    still to be built from it fails). The canary reference model (``canary_ids``, or one a
    canary job names) is refused even with ``force``: it is every device's speed series."""
    model_id = get_model(session, model_id).id  # an id or a unique prefix
    jobs.lock_of_model(session, model_id)  # first: a result being stored for one is waited for
    model = repository.lock(session, model_id)
    if model is None:
        raise NotFound(f"no model {excerpt(model_id)}")
    if model.id in canary_ids or jobs.has_canary_of_model(session, model.id):
        raise Conflict(
            f"model {model.id} is the device canary's reference model: it is never deleted "
            "(its measurements are every device's speed series)"
        )
    users = _users(session, model.id)
    if users and not force:
        raise Conflict(
            f"model {model.id} is still used by {'; '.join(users)}: delete those first, or "
            "pass force=true to delete it anyway (their archs or micro-models measured with it go)"
        )
    entries = datasets.delete_entries_of_model(session, model.id)
    unprepared = datasets.unprepare_archs_of_model(
        session, model.id, f"its model {model.id} was deleted"
    )
    kernels = luts.delete_kernels_of_model(session, model.id)
    gone = measurements.delete_of_model(session, model.id)
    n_jobs = jobs.delete_of_model(session, model.id)
    n = repository.delete_model(session, model.id)
    n_blobs = 0
    if not predictors.names_blob(session, model.id):
        blob_ledger.note_unused(session, blobs, model.id)  # deleted once this commits
        n_blobs = 1
    with _graphs_lock:
        _graphs.pop(model.id, None)
    log.info(
        "model deleted",
        extra={"model_id": model.id, "jobs": n_jobs, "measurements": gone.measurements},
    )
    return Deleted(
        kind=DeletedKind.model,
        id=model.id,
        removed={
            "models": n,
            "jobs": n_jobs,
            "measurements": gone.measurements,
            "op_measurements": gone.op_measurements,
            "dataset_entries": entries,
            "lut_kernels": kernels,
            "blobs": n_blobs,
        },
        changed={"dataset_archs_unprepared": unprepared},
    )


def _users(session: Session, model_id: str) -> list[str]:
    """What still uses the model, one phrase per kind: the datasets with an arch exported as
    it, the LUTs with a micro-model that is it or still to be built from it."""
    using = {
        "dataset": datasets.using_model(session, model_id),
        "LUT": luts.using_model(session, model_id)
        + [
            (lut_id, name)
            for lut_id, name, spec in luts.unbuilt_specs(session)
            if model_id in (spec.get("model_ids") or [])
        ],
    }
    phrases = []
    for kind, found in using.items():
        rows = list(dict(found).items())  # one per id, in order
        if not rows:
            continue
        named = ", ".join(f"{i} ({excerpt(name)})" for i, name in rows[:NAMED_USERS])
        more = f" and {len(rows) - NAMED_USERS} more" if len(rows) > NAMED_USERS else ""
        phrases.append(f"{len(rows)} {kind}{'s' if len(rows) > 1 else ''}: {named}{more}")
    return phrases
