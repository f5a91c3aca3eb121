"""Predictions for search jobs: a device's current GCN (per space) or its LUT, applied to archs
of a space or to stored models; batches of up to 10,000 items."""

from __future__ import annotations

from sqlalchemy.orm import Session

from latlab.errors import LatlabError
from latlab.graph import OpGraph
from latlab.schemas import (
    MAX_PREDICT_ITEMS,
    EstimatedOp,
    PredictDevicesOut,
    PredictDevicesRequest,
    Prediction,
    PredictorKind,
    PredictOut,
    PredictRequest,
)
from lut.errors import MissingEntry
from lut.predict import predict
from predictors.features import graph_features
from server.blobstore import BlobStore
from server.datasets.service import space_or_invalid
from server.devices.service import get_device
from server.errors import InvalidInput, NotFound, PayloadTooLarge
from server.luts.service import lookup_table, newest_ready_lut
from server.models.service import model_graph
from server.predict.cache import PredictorCache
from server.registry.service import current_predictor
from server.tables import Lut, Predictor

__all__ = ["MAX_BATCH", "MAX_DEVICES", "predict_latency", "predict_latency_on_devices"]

#: Architectures or models in one call.
MAX_BATCH = MAX_PREDICT_ITEMS
#: Devices in one multi-device call.
MAX_DEVICES = 16


def predict_latency(
    session: Session, blobs: BlobStore, cache: PredictorCache, body: PredictRequest
) -> PredictOut:
    device = get_device(session, body.device_id)
    items = _items(body)
    source = _source(session, device.id, body)
    if isinstance(source, Lut):
        predictions = _with_lut(session, blobs, source, body, items)
        kind = PredictorKind.lut
    else:
        predictions = _with_gcn(session, blobs, cache, source, body, items)
        kind = PredictorKind.gcn
    return PredictOut(
        device_id=device.id, predictor=kind, version=source.id, predictions=predictions
    )


def predict_latency_on_devices(
    session: Session, blobs: BlobStore, cache: PredictorCache, body: PredictDevicesRequest
) -> PredictDevicesOut:
    """The same items on each device, each answered by that device's own predictor; one
    device that cannot answer fails the whole call (its id in the message)."""
    if len(body.device_ids) > MAX_DEVICES:
        raise PayloadTooLarge(f"{len(body.device_ids)} devices in one call; at most {MAX_DEVICES}")
    device_ids = [get_device(session, d).id for d in body.device_ids]  # ids or names
    repeated = sorted({d for d in device_ids if device_ids.count(d) > 1})
    if repeated:
        raise InvalidInput(f"devices listed more than once: {', '.join(repeated)}")
    query = body.model_dump(exclude={"device_ids"})
    return PredictDevicesOut(
        results=[
            predict_latency(session, blobs, cache, PredictRequest(device_id=d, **query))
            for d in device_ids
        ]
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


def _source(session: Session, device_id: str, body: PredictRequest) -> Lut | Predictor:
    """The LUT or predictor that answers: ``version`` if given, else the device's current GCN
    for the space (gcn, auto), else its newest ready LUT (lut, auto)."""
    if body.version is not None:
        found: Lut | Predictor | None = session.get(Lut, body.version) or session.get(
            Predictor, body.version
        )
        if found is None:
            raise NotFound(f"no LUT or predictor {body.version!r}")
        if found.device_id != device_id:
            raise InvalidInput(
                f"{body.version} belongs to device {found.device_id}, not {device_id}"
            )
        return found
    space = body.space if body.archs is not None else None
    if body.predictor in (PredictorKind.gcn, PredictorKind.auto):
        row = current_predictor(session, device_id, space)
        if row is not None:
            return row
        if body.predictor == PredictorKind.gcn:
            what = f"archs of {space}" if space else "whole models"
            raise NotFound(
                f"device {device_id} has no current GCN for {what}: train one with latlab train"
            )
    lut = newest_ready_lut(session, device_id)
    if lut is None:
        raise NotFound(
            f"device {device_id} has no ready LUT or GCN: build one with POST /v1/luts "
            "or train one with latlab train"
        )
    return lut


def _parse_archs(body: PredictRequest, items: list[str | int]) -> tuple[object, list[object]]:
    assert body.space is not None
    space = space_or_invalid(body.space, body.space_params)
    try:
        return space, [space.parse(item) for item in items]
    except LatlabError as exc:
        raise InvalidInput(str(exc)) from exc


def _arch_indices(body: PredictRequest, items: list[str | int]) -> list[int]:
    """Indices of the archs: plain in-range ints as they are (a search job's usual form, and
    10,000 of them parse in tens of ms), anything else through the space's parser."""
    space = space_or_invalid(body.space or "", body.space_params)
    if all(type(i) is int and 0 <= i < space.size for i in items):
        return items  # type: ignore[return-value]
    _, archs = _parse_archs(body, items)
    return [a.index for a in archs]  # type: ignore[attr-defined]


def _with_gcn(
    session: Session,
    blobs: BlobStore,
    cache: PredictorCache,
    row: Predictor,
    body: PredictRequest,
    items: list[str | int],
) -> list[Prediction]:
    loaded = cache.get(row, blobs)
    if body.archs is not None:
        if row.space != body.space or row.space_params != body.space_params:
            raise InvalidInput(
                f"predictor {row.id} reads archs of {row.space} {row.space_params}, "
                f"not {body.space} {body.space_params}"
            )
        mean, std = cache.predict_archs(loaded, _arch_indices(body, items))
    else:
        if row.space is not None:
            raise InvalidInput(f"predictor {row.id} reads archs of {row.space}, not whole models")
        feats = [graph_features(model_graph(session, blobs, str(m))) for m in items]
        mean, std = cache.predict_graphs(loaded, feats)
    return [
        Prediction(
            item=str(item),
            latency_ms=float(mean[i]),
            uncertainty_ms=float(std[i]) if std is not None else None,
        )
        for i, item in enumerate(items)
    ]


def _with_lut(
    session: Session, blobs: BlobStore, lut: Lut, body: PredictRequest, items: list[str | int]
) -> list[Prediction]:
    table = lookup_table(lut)
    graphs: list[tuple[str, OpGraph]]
    if body.model_ids is not None:
        graphs = [(m, model_graph(session, blobs, m)) for m in body.model_ids]
    else:
        space, archs = _parse_archs(body, items)
        graphs = [(str(item), space.graph(a)) for item, a in zip(items, archs, strict=True)]  # type: ignore[attr-defined]
    predictions = []
    for label, graph in graphs:
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
    return predictions
