"""Predictions for search jobs: a device's LUT applied to archs of a space or stored models."""

from __future__ import annotations

from sqlalchemy.orm import Session

from latlab.errors import LatlabError
from latlab.graph import OpGraph
from latlab.schemas import EstimatedOp, Prediction, PredictOut, PredictRequest
from lut.errors import MissingEntry
from lut.predict import predict
from server.blobstore import BlobStore
from server.datasets.service import space_or_invalid
from server.devices.service import get_device
from server.errors import InvalidInput, NotFound, PayloadTooLarge
from server.luts.service import get_lut, lookup_table, newest_ready_lut
from server.models.service import model_graph

__all__ = ["MAX_BATCH", "predict_latency"]

#: Architectures or models in one call.
MAX_BATCH = 10_000


def predict_latency(session: Session, blobs: BlobStore, body: PredictRequest) -> PredictOut:
    device = get_device(session, body.device_id)
    items = _items(body)
    if body.lut_id is not None:
        lut = get_lut(session, body.lut_id)
        if lut.device_id != device.id:
            raise InvalidInput(f"LUT {lut.id} belongs to device {lut.device_id}, not {device.id}")
    else:
        found = newest_ready_lut(session, device.id)
        if found is None:
            raise NotFound(f"device {device.id} has no ready LUT: build one with POST /v1/luts")
        lut = found
    table = lookup_table(lut)
    predictions = []
    for label, graph in _graphs(session, blobs, body, items):
        try:
            p = predict(table, graph)
        except MissingEntry as exc:
            raise InvalidInput(f"{label}: {exc}") from exc
        predictions.append(
            Prediction(
                item=label,
                latency_ms=p.latency_ms,
                kernels=p.kernels,
                estimated=[
                    EstimatedOp(
                        nodes=list(e.nodes), op_type=e.op_type, key=e.key, latency_us=e.latency_us
                    )
                    for e in p.estimated
                ],
            )
        )
    return PredictOut(
        device_id=device.id, predictor=body.predictor, version=lut.id, predictions=predictions
    )


def _items(body: PredictRequest) -> list[str | int]:
    if (body.archs is None) == (body.model_ids is None):
        raise InvalidInput("give archs (with a space) or model_ids")
    items: list[str | int] = list(body.archs if body.archs is not None else body.model_ids or [])
    if len(items) > MAX_BATCH:
        raise PayloadTooLarge(f"{len(items)} items in one call; at most {MAX_BATCH}")
    if body.archs is not None and body.space is None:
        raise InvalidInput("archs need a space")
    return items


def _graphs(
    session: Session, blobs: BlobStore, body: PredictRequest, items: list[str | int]
) -> list[tuple[str, OpGraph]]:
    if body.model_ids is not None:
        return [(m, model_graph(session, blobs, m)) for m in body.model_ids]
    assert body.space is not None
    space = space_or_invalid(body.space, body.space_params)
    out = []
    for item in items:
        try:
            arch = space.parse(item)
        except LatlabError as exc:
            raise InvalidInput(str(exc)) from exc
        out.append((str(item), space.graph(arch)))
    return out
