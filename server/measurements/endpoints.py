from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query, Response, status
from sqlalchemy.orm import Session

from latlab.schemas import MeasurementIn, MeasurementOut
from latlab.server.deps import (
    MAX_INT32,
    TOTAL_COUNT,
    DeviceRef,
    DeviceToken,
    Offset,
    SessionDep,
    StateDep,
    UserAuth,
    as_device,
    set_total_count,
)
from latlab.server.devices.service import device_filter
from latlab.server.errors import DeadlinePassed
from latlab.server.jobs import service as jobs
from latlab.server.measurements import service
from latlab.server.routing import api_router

router = api_router(tags=["measurements"])
agent_router = api_router(prefix="/agent", tags=["agent"])


@router.get(
    "/measurements",
    response_model=list[MeasurementOut],
    dependencies=[UserAuth],
    responses=TOTAL_COUNT,
)
def list_measurements(
    session: SessionDep,
    response: Response,
    model_id: str | None = None,
    device_id: str | None = None,
    job_id: str | None = None,
    samples: bool = False,
    ops: bool = False,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    offset: Offset = 0,
    newest_first: bool = False,
) -> list[MeasurementOut]:
    """Measurements by model, device or job, oldest first (``newest_first``: the latest
    first); raw samples and per-op rows on request. ``X-Total-Count``: how many match."""
    filters = {
        "model_id": model_id,
        "device_id": device_filter(session, device_id),
        "job_id": job_id,
    }
    page = service.list_measurements(
        session,
        **filters,
        samples=samples,
        ops=ops,
        limit=limit,
        offset=offset,
        newest_first=newest_first,
    )
    set_total_count(
        response, page, limit, offset, lambda: service.count_measurements(session, **filters)
    )
    return page


@router.get(
    "/measurements/{measurement_id}", response_model=MeasurementOut, dependencies=[UserAuth]
)
def get_measurement(
    measurement_id: Annotated[int, Path(ge=1, le=MAX_INT32)], session: SessionDep
) -> MeasurementOut:
    """One measurement with its raw samples and per-op rows."""
    return service.get_measurement(session, measurement_id)


@agent_router.post(
    "/jobs/{job_id}/result",
    response_model=MeasurementOut,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": MeasurementOut, "description": "Already stored (a repeat)"}},
)
async def upload_result(
    job_id: str,
    body: MeasurementIn,
    response: Response,
    token: DeviceToken,
    state: StateDep,
) -> MeasurementOut:
    """Store the result of a leased job; 409 for a stale or unknown lease or a result after
    the job's deadline (the job then ends failed), 200 for a repeat."""

    def store(session: Session, device: DeviceRef) -> tuple[MeasurementOut, bool]:
        return service.store_result(session, device.id, job_id, body)

    def fail_late(session: Session, device: DeviceRef) -> None:
        jobs.fail_past_deadline(session, device.id, job_id, body.lease_token)

    try:
        stored, created = await as_device(state, token, store)
    except DeadlinePassed:
        await as_device(state, token, fail_late)  # the refusal's own transaction
        raise
    if created:
        state.metrics.results.inc()
        state.metrics.measurement_seconds.labels(runtime=body.runtime).observe(body.timing_wall_s)
    else:
        response.status_code = status.HTTP_200_OK
    return stored
