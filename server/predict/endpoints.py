from __future__ import annotations

import time

from fastapi.responses import Response

from latlab.schemas import PredictDevicesOut, PredictDevicesRequest, PredictOut, PredictRequest
from latlab.server.deps import AppState, SessionDep, StateDep, UserAuth
from latlab.server.predict import service
from latlab.server.routing import api_router

router = api_router(tags=["predict"])


@router.post("/predict", response_model=PredictOut, dependencies=[UserAuth])
def predict(body: PredictRequest, session: SessionDep, state: StateDep) -> Response:
    """Latency per arch (``space`` + ``archs``: indices, strings or vectors) or per stored model
    (``model_ids``): by the device's current GCN for the space (with the ensemble's spread), or
    its newest ready LUT (kernels it has no entry for are estimated and listed); ``auto``
    prefers the GCN; ``version`` picks a LUT or predictor. At most 10,000 items per call."""
    started = time.perf_counter()
    out = service.predict_latency(session, state.blobs, state.predictors, body)
    _count(state, [out], time.perf_counter() - started)
    return _json(out)


@router.post("/predict/devices", response_model=PredictDevicesOut, dependencies=[UserAuth])
def predict_on_devices(
    body: PredictDevicesRequest, session: SessionDep, state: StateDep
) -> Response:
    """The same archs or models on several devices (at most 16), each by its own current
    predictor as in ``/v1/predict``; one result per device, in the order asked."""
    started = time.perf_counter()
    out = service.predict_latency_on_devices(session, state.blobs, state.predictors, body)
    _count(state, out.results, time.perf_counter() - started)
    return _json(out)


def _count(state: AppState, answers: list[PredictOut], seconds: float) -> None:
    kinds = {a.predictor for a in answers}
    predictor = kinds.pop() if len(kinds) == 1 else "mixed"
    state.metrics.predict_seconds.labels(predictor=predictor).observe(seconds)
    state.metrics.predict_archs.inc(sum(len(a.predictions) for a in answers))


def _json(out: PredictOut | PredictDevicesOut) -> Response:
    """Serialised by pydantic in one pass: FastAPI's own path (a python-mode dump, then
    json.dumps) took 6.7 times as long on a 10,000-item answer (27 vs 4 ms)."""
    return Response(out.model_dump_json(), media_type="application/json")
