"""Predictions for search jobs: the device's latency models (registered predictor versions,
built LUTs) applied to archs of a space or to stored models; batches of up to 10,000 items.

``predictor`` is ``auto`` (the device's first model that reads the items: its current
registered predictor, then its newest built LUT) or a kind (the first of that kind); ``version``
names one model. Nothing here names a kind: each model answers through ``LatencyModel``."""

from __future__ import annotations

from sqlalchemy.orm import Session

from latlab.latency_model import AUTO, Estimates, kinds
from latlab.schemas import (
    MAX_PREDICT_ITEMS,
    PredictDevicesOut,
    PredictDevicesRequest,
    Prediction,
    PredictOut,
    PredictRequest,
)
from latlab.server.blobstore import BlobStore
from latlab.server.db import release
from latlab.server.devices.service import get_device
from latlab.server.errors import InvalidInput, NotFound, PayloadTooLarge
from latlab.server.luts.service import lut_source, lut_sources
from latlab.server.models.service import model_graph
from latlab.server.predict.cache import PredictorCache
from latlab.server.predict.sources import Source
from latlab.server.registry.service import predictor_source, predictor_sources
from latlab.spaces import get_space
from latlab.untrusted import excerpt

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
    served = cache.get(source, blobs)
    graphs = [model_graph(session, blobs, str(m)) for m in items] if body.archs is None else []
    # nothing more to read: give the connection back before computing (a first NB201 table
    # takes seconds, and on SQLite an open transaction holds the one write gate)
    release(session)
    if body.archs is not None:
        assert body.space is not None
        estimates = cache.predict_archs(served, body.space, body.space_params, items)
    else:
        estimates = served.model.predict_graphs(graphs)
    if not body.detail:
        estimates = Estimates(estimates.latency_ms, estimates.uncertainty_ms)
    return PredictOut(
        device_id=device.id,
        predictor=source.kind,
        version=source.id,
        predictions=_predictions(items, estimates),
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
    if body.archs is not None:
        if body.space is None:
            raise InvalidInput("archs need a space")
        get_space(body.space, **body.space_params)  # an unknown space or parameter: a 422 first
    return items


def _source(session: Session, device_id: str, body: PredictRequest) -> Source:
    """The model that answers: ``version`` if given, else the device's first model of the
    asked kind (any, for ``auto``) that reads the items."""
    if body.version is not None:
        found = predictor_source(session, body.version) or lut_source(session, body.version)
        if found is None:
            raise NotFound(f"no LUT or predictor {excerpt(body.version)}")
        if found.device_id != device_id:
            raise InvalidInput(
                f"{body.version} belongs to device {found.device_id}, not {device_id}"
            )
        found.check(body)
        return found
    known = kinds()
    if body.predictor != AUTO and body.predictor not in known:
        raise InvalidInput(f"predictor: one of {', '.join([AUTO, *known])}")
    wanted: list[Source] = []
    for sources in (predictor_sources, lut_sources):  # registered versions first
        for source in sources(session, device_id):
            if body.predictor in (AUTO, source.kind):
                if source.reads(body):
                    return source
                wanted.append(source)
    for source in wanted:
        if body.archs is not None and source.space == body.space:
            source.check(body)  # this space's model, other parameters: say so
    what = f"archs of {body.space}" if body.archs is not None else "whole models"
    kind = "latency model" if body.predictor == AUTO else f"current {body.predictor}"
    raise NotFound(
        f"device {device_id} has no {kind} for {what}: build a LUT with POST /v1/luts "
        "or train a predictor with latlab train"
    )


def _predictions(items: list[str | int], estimates: Estimates) -> list[Prediction]:
    mean = estimates.latency_ms.tolist()
    std = estimates.uncertainty_ms.tolist() if estimates.uncertainty_ms is not None else None
    if estimates.kernels is None and estimates.estimated is None:  # the common, fast case
        if std is None:
            return [
                Prediction(item=str(item), latency_ms=ms)
                for item, ms in zip(items, mean, strict=True)
            ]
        return [
            Prediction(item=str(item), latency_ms=ms, uncertainty_ms=sd)
            for item, ms, sd in zip(items, mean, std, strict=True)
        ]
    return [
        Prediction(
            item=str(item),
            latency_ms=mean[i],
            uncertainty_ms=std[i] if std is not None else None,
            kernels=estimates.kernels[i] if estimates.kernels is not None else None,
            estimated=estimates.estimated[i] if estimates.estimated is not None else [],
        )
        for i, item in enumerate(items)
    ]
