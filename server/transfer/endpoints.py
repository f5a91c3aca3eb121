from __future__ import annotations

from fastapi import status

from latlab.schemas import PredictorOut, TransferFitIn, TransferPlanIn, TransferPlanOut
from latlab.server.deps import SessionDep, StateDep, UserAuth, UserWrite
from latlab.server.routing import api_router
from latlab.server.transfer import service

router = api_router(tags=["predictors"])


@router.post("/predictors/transfer/plan", response_model=TransferPlanOut, dependencies=[UserAuth])
def plan_transfer(session: SessionDep, body: TransferPlanIn) -> TransferPlanOut:
    """The archs a device should measure for a transfer predictor from the other devices'
    latencies on the space (an imported device: the ones to take from its data)."""
    return service.plan(session, body)


@router.post(
    "/predictors/transfer",
    response_model=PredictorOut,
    status_code=status.HTTP_201_CREATED,
    dependencies=[UserWrite],
)
def fit_transfer(session: SessionDep, state: StateDep, body: TransferFitIn) -> PredictorOut:
    """Fit a transfer predictor from the device's measured latencies and the sources', and
    register it as the device + runtime's next version (with leave-one-out metrics)."""
    return service.fit(session, state.blobs, state.settings, body)
