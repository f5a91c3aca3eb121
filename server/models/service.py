"""Models (ONNX or TFLite, told apart by the TFLite file identifier): validated on upload,
stored once by sha256, summarised."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from latlab.errors import ModelInvalid
from latlab.graph import OpGraph
from latlab.onnx_summary import MAX_NODES, load_onnx, summarize_onnx
from latlab.runtimes import ModelFormat
from latlab.schemas import ModelOut, ModelSummary
from latlab.server import blob_ledger
from latlab.server.blobstore import BlobStore
from latlab.server.config import Settings
from latlab.server.db import utcnow
from latlab.server.errors import InvalidInput, NotFound
from latlab.server.models import repository
from latlab.server.tables import Model
from latlab.tflite_summary import is_tflite, summarize_tflite

__all__ = ["ModelLimits", "get_model", "list_models", "model_graph", "model_out", "store_model"]

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
    model = repository.get(session, model_id)
    if model is None:
        raise NotFound(f"no model {model_id!r}")
    return model


def list_models(session: Session, limit: int, offset: int) -> list[Model]:
    return repository.listed(session, limit, offset)


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
