from __future__ import annotations

import time
from typing import Annotated

from fastapi import Query, Response, status
from sqlalchemy.orm import Session

from latlab.schemas import ClaimedJob, JobCreate, JobFailureIn, JobOut, JobState, LeaseIn
from latlab.server.canary.service import CanaryPolicy, claim_hook
from latlab.server.deps import (
    TOTAL_COUNT,
    DeviceRef,
    DeviceToken,
    Offset,
    SessionDep,
    StateDep,
    UserAuth,
    UserWrite,
    as_device,
    set_total_count,
)
from latlab.server.devices.service import device_filter
from latlab.server.jobs import service
from latlab.server.routing import api_router

router = api_router(tags=["jobs"])
agent_router = api_router(prefix="/agent", tags=["agent"])


@router.post(
    "/jobs",
    response_model=JobOut,
    status_code=status.HTTP_201_CREATED,
    dependencies=[UserWrite],
    responses={200: {"model": JobOut, "description": "An identical pending job (deduplicated)"}},
)
def create_job(body: JobCreate, response: Response, session: SessionDep, state: StateDep) -> JobOut:
    """Queue a timing job: a model on one device, or on any device matching a selector."""
    job = service.create_job(session, body, state.settings.max_attempts)
    session.commit()  # visible before the waiting agents are woken
    if job.deduplicated:
        response.status_code = status.HTTP_200_OK
    else:
        state.notifier.notify()
    matches = service.online_matches(session, job, state.settings.offline_after_s)
    return job.model_copy(update={"online_matches": matches})


@router.get("/jobs", response_model=list[JobOut], dependencies=[UserAuth], responses=TOTAL_COUNT)
def list_jobs(
    session: SessionDep,
    response: Response,
    state: JobState | None = None,
    model_id: str | None = None,
    device_id: str | None = None,
    ids: Annotated[list[str] | None, Query(max_length=1000)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    offset: Offset = 0,
    newest_first: bool = False,
) -> list[JobOut]:
    """Jobs oldest first (``newest_first``: the latest first); ``X-Total-Count`` says how many
    match the filters in all."""
    device = device_filter(session, device_id)
    page = service.list_jobs(
        session,
        state=state,
        model_id=model_id,
        device_id=device,
        ids=ids,
        limit=limit,
        offset=offset,
        newest_first=newest_first,
    )

    def count() -> int:
        return service.count_jobs(
            session, state=state, model_id=model_id, device_id=device, ids=ids
        )

    set_total_count(response, page, limit, offset, count)
    return page


@router.get("/jobs/{job_id}", response_model=JobOut, dependencies=[UserAuth])
def get_job(job_id: str, session: SessionDep) -> JobOut:
    job = service.get_job(session, job_id)  # an id or a unique prefix; NotFound
    return service.list_jobs(session, ids=[job.id], limit=1)[0]


@router.post("/jobs/{job_id}/cancel", response_model=JobOut, dependencies=[UserWrite])
def cancel_job(job_id: str, session: SessionDep) -> JobOut:
    return service.cancel_job(session, job_id)


# --------------------------------------------------------------------------- agent side


@agent_router.post(
    "/claim",
    response_model=ClaimedJob,
    responses={204: {"description": "No job for this device within wait_s"}},
)
async def claim(
    token: DeviceToken,
    state: StateDep,
    wait_s: Annotated[float, Query(ge=0, le=300)] = 0,
) -> ClaimedJob | Response:
    """Lease the next job for this device, waiting up to ``wait_s`` seconds for one (long poll)."""
    settings = state.settings
    rules = service.ClaimRules(
        lease_s=settings.lease_s,
        deadline_grace_s=settings.deadline_grace_s,
        first=claim_hook(state.canaries, CanaryPolicy.of(settings), settings.max_attempts),
    )
    deadline = time.monotonic() + min(wait_s, state.settings.claim_wait_max_s)

    def attempt(session: Session, device: DeviceRef) -> ClaimedJob | None:
        return service.claim_job(session, device.id, device.name, device.descriptor, rules)

    while True:
        # each attempt its own short transaction: a long poll holds none while it waits
        claimed = await as_device(state, token, attempt)
        if claimed is not None:
            state.metrics.claims.labels(outcome="job").inc()
            return claimed
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            state.metrics.claims.labels(outcome="empty").inc()
            return Response(status_code=status.HTTP_204_NO_CONTENT)
        await state.notifier.wait(min(state.settings.claim_poll_s, remaining))


@agent_router.post("/jobs/{job_id}/failure", response_model=JobOut)
async def report_failure(
    job_id: str, body: JobFailureIn, token: DeviceToken, state: StateDep
) -> JobOut:
    """The job could not be measured; it ends ``failed`` with the error text."""

    def fail(session: Session, device: DeviceRef) -> JobOut:
        return service.fail_job(session, device.id, job_id, body.lease_token, body.error)

    return await as_device(state, token, fail)


@agent_router.post("/jobs/{job_id}/release", response_model=JobOut)
async def release(job_id: str, body: LeaseIn, token: DeviceToken, state: StateDep) -> JobOut:
    """Give a leased job back to the queue (the agent is stopping); no attempt is counted."""

    def give_back(session: Session, device: DeviceRef) -> JobOut:
        return service.release_job(session, device.id, job_id, body.lease_token)

    job = await as_device(state, token, give_back)  # committed: visible before claims wake
    state.notifier.notify()
    return job
