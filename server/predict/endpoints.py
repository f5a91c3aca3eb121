from __future__ import annotations

from fastapi import APIRouter

from latlab.schemas import PredictOut, PredictRequest
from server.deps import SessionDep, StateDep, UserAuth
from server.predict import service

router = APIRouter(tags=["predict"])


@router.post("/predict", response_model=PredictOut, dependencies=[UserAuth])
def predict(body: PredictRequest, session: SessionDep, state: StateDep) -> PredictOut:
    """Latency per arch (``space`` + ``archs``: indices, strings or vectors) or per stored model
    (``model_ids``), from the device's newest ready LUT (or ``lut_id``); kernels the LUT has no
    entry for are estimated and listed. At most 10,000 items per call."""
    return service.predict_latency(session, state.blobs, body)
