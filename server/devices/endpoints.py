from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Query, status
from sqlalchemy.orm import Session

from latlab.schemas import (
    CanaryPoint,
    DeviceOut,
    DeviceRegistered,
    HeartbeatIn,
    HeartbeatOut,
    RegisterIn,
)
from latlab.server.auth import bearer_token
from latlab.server.canary import repository as canary
from latlab.server.db import utcnow
from latlab.server.deps import (
    AuthHeader,
    DeviceRef,
    DeviceToken,
    SessionDep,
    StateDep,
    UserAuth,
    UserWrite,
    as_device,
)
from latlab.server.devices import service
from latlab.server.jobs.service import extend_lease, release_device_jobs
from latlab.server.routing import api_router

router = api_router(tags=["devices"])


@router.post(
    "/devices/register", status_code=status.HTTP_201_CREATED, response_model=DeviceRegistered
)
def register(
    body: RegisterIn, session: SessionDep, state: StateDep, authorization: AuthHeader = None
) -> DeviceRegistered:
    """Register a device with the enrollment key; returns its id and its own token (once)."""
    return service.register_device(
        session, state.settings.enroll_key, bearer_token(authorization), body
    )


@router.get("/devices", response_model=list[DeviceOut], dependencies=[UserAuth])
def list_devices(session: SessionDep, state: StateDep) -> list[DeviceOut]:
    after = state.settings.offline_after_s
    return [service.device_out(d, after) for d in service.list_devices(session)]


@router.get("/devices/{device_id}", response_model=DeviceOut, dependencies=[UserAuth])
def get_device(device_id: str, session: SessionDep, state: StateDep) -> DeviceOut:
    """The device with this id, or else with this name."""
    return service.device_out(
        service.get_device(session, device_id), state.settings.offline_after_s
    )


@router.get(
    "/devices/{device_id}/canary", response_model=list[CanaryPoint], dependencies=[UserAuth]
)
def device_canary(
    device_id: str,
    session: SessionDep,
    runtime_identity: Annotated[str | None, Query(max_length=64)] = None,
    since: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
) -> list[CanaryPoint]:
    """The device's canary series, oldest first (the latest ``limit`` points): the reference
    model timed between its jobs, per runtime identity. A change in the device's speed shows
    here before it shows in anyone's dataset."""
    device = service.get_device(session, device_id)
    return canary.series(
        session, device.id, runtime_identity=runtime_identity, since=since, limit=limit
    )


@router.post("/devices/{device_id}/revoke", response_model=DeviceOut, dependencies=[UserWrite])
def revoke_device(device_id: str, session: SessionDep, state: StateDep) -> DeviceOut:
    """Revoke a device's token: it can no longer claim, upload or heartbeat; its leased job
    goes back to the queue and jobs pinned to it are cancelled. Its measurements stay."""
    device, newly = service.revoke_device(session, device_id)
    if newly:
        release_device_jobs(session, device.id)
        session.commit()  # the requeued job is visible before the claims wake
        state.notifier.notify_all()
    return service.device_out(device, state.settings.offline_after_s)


@router.post("/agent/heartbeat", response_model=HeartbeatOut, tags=["agent"])
async def heartbeat(body: HeartbeatIn, token: DeviceToken, state: StateDep) -> HeartbeatOut:
    """The device is alive; with a job and its lease token, the lease is extended."""

    def beat(session: Session, device: DeviceRef) -> HeartbeatOut:
        expires = None
        if body.descriptor is not None:
            service.update_descriptor(session, device.id, body.descriptor)
        if body.job_id is not None:
            expires = extend_lease(
                session, device.id, body.job_id, body.lease_token or "", state.settings.lease_s
            )
        return HeartbeatOut(server_time_at=utcnow(), lease_expires_at=expires)

    return await as_device(state, token, beat)
