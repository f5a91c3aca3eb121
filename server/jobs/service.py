"""The job queue: create (deduplicated), claim under a lease, extend, finish, reap.

Job states::

    queued --claim--> leased --result--> done
      ^                 |  \\--failure--> failed
      |-- release / lease expired (attempts < max) --|   lease expired (attempts = max) -> failed
    queued|leased --cancel--> cancelled

A claim is a compare-and-set ``UPDATE ... WHERE id = :id AND state = 'queued'`` inside one
transaction; PostgreSQL picks candidates with ``FOR UPDATE SKIP LOCKED``, SQLite serialises
write transactions (server/db.py). Either way a job is leased to one device at a time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from latlab.runtimes import RuntimeConfig, runtime_spec, runtimes, stored_config
from latlab.schemas import (
    ClaimedJob,
    DeviceDescriptor,
    JobCreate,
    JobOut,
    JobPurpose,
    JobState,
    ModelFormat,
)
from latlab.server.auth import new_lease_token
from latlab.server.db import by_id_or_prefix, utcnow
from latlab.server.devices.service import agent_devices, job_device
from latlab.server.errors import Conflict, InvalidInput, NotFound
from latlab.server.jobs import repository
from latlab.server.jobs.repository import JobRow
from latlab.server.models import repository as models
from latlab.server.tables import Job
from latlab.untrusted import excerpt

__all__ = [
    "ClaimRules",
    "cancel_job",
    "check_lease",
    "claim_job",
    "count_jobs",
    "create_job",
    "device_can_run",
    "extend_lease",
    "fail_job",
    "fail_past_deadline",
    "get_job",
    "job_out",
    "list_jobs",
    "locked_job",
    "missed_deadline",
    "reap_expired_leases",
    "release_job",
    "selector_matches",
]

log = logging.getLogger(__name__)

SELECTOR_FIELDS = frozenset(
    {"name", "hostname", "cpu_model", "cpu_arch", "cpu_cores", "ram_bytes", "os", "gpu", "runtime"}
)
CLAIM_PAGE = 16


# --------------------------------------------------------------------------- matching


def _check_selector(selector: dict[str, str | int]) -> None:
    for key in selector:
        if key not in SELECTOR_FIELDS and not key.startswith("labels."):
            allowed = ", ".join(sorted(SELECTOR_FIELDS))
            raise InvalidInput(
                f"unknown selector field {excerpt(key)}; use one of {allowed}, labels.KEY"
            )


def selector_matches(selector: dict[str, Any], name: str, descriptor: dict[str, Any]) -> bool:
    for key, want in selector.items():
        if key == "name":
            have: Any = name
        elif key == "runtime":
            have = [r.get("name") for r in descriptor.get("runtimes", [])]
            if str(want) not in have:
                return False
            continue
        elif key.startswith("labels."):
            have = descriptor.get("labels", {}).get(key.removeprefix("labels."))
        else:
            have = descriptor.get(key)
        if have is None or str(have) != str(want):
            return False
    return True


def online_matches(session: Session, job: JobOut, offline_after_s: float) -> int:
    """How many online devices could take ``job`` now (its pinned device, or those its
    selector matches), each able to run its runtime and provider."""
    since = utcnow() - timedelta(seconds=offline_after_s)
    return sum(
        1
        for device in agent_devices(session)
        if device.last_seen_at >= since
        and (job.device_id == device.id if job.device_id else True)
        and (job.selector is None or selector_matches(job.selector, device.name, device.descriptor))
        and device_can_run(device.descriptor, job.config)
    )


def device_can_run(descriptor: dict[str, Any], config: RuntimeConfig) -> bool:
    """Whether the device advertises the config's runtime with its provider or delegate."""
    provider = config.provider
    for runtime in DeviceDescriptor.model_validate(descriptor).runtimes:
        if runtime.name == config.runtime and (
            not runtime.providers or provider in runtime.providers
        ):
            return True
    return False


# --------------------------------------------------------------------------- user side


def _dedup_key(body: JobCreate, purpose: JobPurpose) -> str:
    identity = {
        "model_id": body.model_id,
        "device_id": body.device_id,
        "selector": body.selector,
        "config": body.config.model_dump(mode="json"),
    }
    if purpose is not JobPurpose.measure:
        identity["purpose"] = purpose.value
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def create_job(
    session: Session,
    body: JobCreate,
    default_max_attempts: int,
    purpose: JobPurpose = JobPurpose.measure,
) -> JobOut:
    if (body.device_id is None) == (body.selector is None):
        raise InvalidInput("give exactly one of device_id or selector ({} matches any device)")
    model = models.get(session, body.model_id)
    if model is None:
        raise NotFound(f"no model {excerpt(body.model_id)}; upload it first")
    wanted = runtime_spec(body.config.runtime).model_format  # the config named a known one
    if model.format != wanted.value:
        raise InvalidInput(
            f"{body.config.runtime} runs {wanted.value} models; model {model.id} is {model.format}"
        )
    if body.device_id is not None:
        device = job_device(session, body.device_id)
        body = body.model_copy(update={"device_id": device.id})  # a name: stored as the id
        if not device_can_run(device.descriptor, body.config):
            raise InvalidInput(
                f"device {device.id} cannot run {body.config.runtime} with {body.config.provider}"
            )
    if body.selector is not None:
        _check_selector(body.selector)
    key = _dedup_key(body, purpose)
    existing = repository.pending_with_key(session, key)
    if existing is not None:
        return job_out(existing, deduplicated=True)
    now = utcnow()
    job = Job(
        id=uuid.uuid4().hex,
        model_id=body.model_id,
        device_id=body.device_id,
        selector=body.selector,
        config=body.config.model_dump(mode="json"),
        runtime=body.config.runtime,
        provider=body.config.provider,
        runtime_identity=body.config.identity_key(),
        dedup_key=key,
        purpose=purpose.value,
        state=JobState.queued.value,
        attempts=0,
        max_attempts=body.max_attempts or default_max_attempts,
        created_at=now,
        updated_at=now,
    )
    try:
        repository.add(session, job)
    except IntegrityError:  # an identical request won the race
        existing = repository.pending_with_key(session, key)
        if existing is None:
            raise
        return job_out(existing, deduplicated=True)
    log.info("job queued", extra={"job_id": job.id, "model_id": job.model_id})
    return job_out(job)


def get_job(session: Session, job_id: str) -> Job:
    return by_id_or_prefix(session, job_id, repository.get, Job.id, "job")


def job_out(
    job: Job | JobRow, *, deduplicated: bool = False, measurement_id: int | None = None
) -> JobOut:
    return JobOut(
        id=job.id,
        model_id=job.model_id,
        device_id=job.device_id,
        selector=job.selector,
        config=stored_config(job.config),
        state=JobState(job.state),
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        error=job.error,
        claimed_by=job.claimed_by,
        lease_expires_at=job.lease_expires_at,
        deadline_at=job.deadline_at,
        created_at=job.created_at,
        updated_at=job.updated_at,
        finished_at=job.finished_at,
        measurement_id=measurement_id,
        purpose=JobPurpose(job.purpose),
        deduplicated=deduplicated,
    )


def list_jobs(
    session: Session,
    *,
    state: JobState | None = None,
    model_id: str | None = None,
    device_id: str | None = None,
    ids: list[str] | None = None,
    limit: int = 100,
    offset: int = 0,
    newest_first: bool = False,
) -> list[JobOut]:
    rows = repository.listed(
        session,
        state=state,
        model_id=model_id,
        device_id=device_id,
        ids=ids,
        limit=limit,
        offset=offset,
        newest_first=newest_first,
    )
    return [job_out(row, measurement_id=row.measurement_id) for row in rows]


def count_jobs(
    session: Session,
    *,
    state: JobState | None = None,
    model_id: str | None = None,
    device_id: str | None = None,
    ids: list[str] | None = None,
) -> int:
    return repository.counted(session, state=state, model_id=model_id, device_id=device_id, ids=ids)


def cancel_job(session: Session, job_id: str) -> JobOut:
    job = locked_job(session, get_job(session, job_id).id)  # an id or a unique prefix
    if not JobState(job.state).pending:
        raise Conflict(f"job {job.id} is already {job.state}")
    repository.finish(session, job.id, JobState.cancelled, job.error, utcnow())
    return _current(session, job.id)


def _current(session: Session, job_id: str) -> JobOut:
    """The job as it is now in this transaction (after a Core update)."""
    return job_out(locked_job(session, job_id))


# --------------------------------------------------------------------------- agent side


#: Given the job a device is about to be leased (a candidates row), the id of a queued job to
#: lease it instead, first (server/canary.py: the device's canary), or None.
FirstHook = Callable[[Session, str, JobRow, datetime], str | None]


@dataclass(frozen=True)
class ClaimRules:
    lease_s: float
    #: Added to a job's ``deadline_s`` for its deadline on the server (the agent stops at
    #: ``deadline_s`` by its own clock, then reports).
    deadline_grace_s: float = 0.0
    first: FirstHook | None = None


def claim_job(
    session: Session,
    device_id: str,
    device_name: str,
    descriptor: dict[str, Any],
    rules: ClaimRules,
) -> ClaimedJob | None:
    """Lease the oldest queued job this device may run, or return None.

    The runtime and provider are matched in SQL (the job's columns against the device's
    advertised runtimes); a selector, rare, is checked here on the candidates' rows."""
    now = utcnow()
    for job_id in repository.requeue_held_by(
        session, device_id, f"device {device_id} dropped the job (claimed again)", now
    ):
        # one job per device: a device that claims again has dropped what it held
        log.warning("job requeued: its device claimed again", extra={"job_id": job_id})
    # runtimes this server knows: a job of a plug-in since removed waits until it is back
    known = runtimes()
    advertised = [
        (r.name, list(r.providers))
        for r in DeviceDescriptor.model_validate(descriptor).runtimes
        if r.name in known
    ]
    # the oldest job alone first (most claims take it: one row locked and loaded), then pages
    page, offset = 1, 0
    while True:
        rows = repository.candidates(session, device_id, advertised, limit=page, offset=offset)
        for row in rows:
            if row.selector and not selector_matches(row.selector, device_name, descriptor):
                continue
            if rules.first is not None and row.purpose == JobPurpose.measure.value:
                first_id = rules.first(session, device_id, row, now)
                first = repository.candidate(session, first_id) if first_id else None
                row = first if first is not None else row
            token = new_lease_token()
            config = stored_config(row.config)
            expires = now + timedelta(seconds=rules.lease_s)
            deadline = now + timedelta(seconds=config.deadline_s + rules.deadline_grace_s)
            if not repository.lease(session, row.id, device_id, token, expires, deadline, now):
                continue  # another device took it between our read and our write
            log.info("job leased", extra={"job_id": row.id, "device_id": device_id})
            return ClaimedJob(
                job_id=row.id,
                lease_token=token,
                lease_expires_at=expires,
                lease_s=rules.lease_s,
                model_id=row.model_id,
                model_format=ModelFormat(row.model_format),
                model_size_bytes=row.model_size_bytes,
                config=config,
            )
        if len(rows) < page:
            return None
        offset += page
        page = CLAIM_PAGE


def locked_job(session: Session, job_id: str) -> JobRow:
    """The job's row, locked for this transaction; NotFound if there is none."""
    job = repository.lock(session, job_id)
    if job is None:
        raise NotFound(f"no job {excerpt(job_id)}")
    return job


def check_lease(session: Session, device_id: str, job_id: str, lease_token: str) -> JobRow:
    """The job, if this device holds its live lease; 404 unknown job, 409 otherwise."""
    return live_lease(locked_job(session, job_id), device_id, lease_token)


def live_lease(job: JobRow, device_id: str, lease_token: str) -> JobRow:
    """``job`` (locked) if this device holds its live lease; 409 otherwise."""
    if job.state != JobState.leased.value:
        raise Conflict(f"job {job.id} is {job.state}, not leased: the lease is stale")
    if job.claimed_by != device_id or job.lease_token != lease_token:
        raise Conflict(f"job {job.id}: unknown or stale lease token")
    return job


def extend_lease(
    session: Session, device_id: str, job_id: str, lease_token: str, lease_s: float
) -> datetime:
    check_lease(session, device_id, job_id, lease_token)
    now = utcnow()
    expires = now + timedelta(seconds=lease_s)
    repository.extend(session, job_id, expires, now)
    return expires


def release_job(session: Session, device_id: str, job_id: str, lease_token: str) -> JobOut:
    """The agent gives the job back (it is stopping); the attempt is not counted."""
    check_lease(session, device_id, job_id, lease_token)
    repository.back_to_queue(
        session, job_id, f"released by device {device_id}", utcnow(), count=False
    )
    log.info("job released", extra={"job_id": job_id, "device_id": device_id})
    return _current(session, job_id)


def missed_deadline(job: JobRow, now: datetime) -> str | None:
    """Why the leased ``job`` is over at ``now`` whatever its lease says: its deadline passed
    (None while it has not, or for a job leased before deadlines were kept)."""
    if job.deadline_at is None or now <= job.deadline_at:
        return None
    deadline_s = stored_config(job.config).deadline_s
    return (
        f"deadline of {deadline_s:g} s passed on device {job.claimed_by} "
        f"(no result by {job.deadline_at.isoformat(timespec='seconds')})"
    )


def is_repeat(job: JobRow, state: JobState, device_id: str, lease_token: str) -> bool:
    """Whether a finish the device reports again already happened (the same lease)."""
    return bool(
        job.state == state.value and job.claimed_by == device_id and job.lease_token == lease_token
    )


def fail_job(session: Session, device_id: str, job_id: str, lease_token: str, error: str) -> JobOut:
    """A failed measurement is data: the job ends ``failed`` with the agent's error text."""
    job = locked_job(session, job_id)
    if is_repeat(job, JobState.failed, device_id, lease_token):
        return job_out(job)
    live_lease(job, device_id, lease_token)
    repository.finish(session, job_id, JobState.failed, error, utcnow())
    log.info("job failed", extra={"job_id": job_id, "device_id": device_id})
    return _current(session, job_id)


def fail_past_deadline(session: Session, device_id: str, job_id: str, lease_token: str) -> None:
    """End the job ``failed`` if this device's lease on it is past its deadline (its result
    came too late); anything else is left as it is."""
    job = locked_job(session, job_id)
    if job.state != JobState.leased.value or (job.claimed_by, job.lease_token) != (
        device_id,
        lease_token,
    ):
        return
    now = utcnow()
    missed = missed_deadline(job, now)
    if missed is not None:
        repository.finish(session, job_id, JobState.failed, f"{missed}; result refused", now)
        log.warning("job failed: %s", missed, extra={"job_id": job_id, "device_id": device_id})


def release_device_jobs(session: Session, device_id: str) -> tuple[int, int]:
    """A revoked device's work: queued or leased jobs pinned to it cancelled, other jobs it
    holds back to the queue (the attempt not counted). Returns (requeued, cancelled)."""
    reason = f"device {device_id} was revoked"
    now = utcnow()
    cancelled = repository.cancel_pinned_to(session, device_id, reason, now)
    requeued = repository.requeue_held_by(session, device_id, reason, now)
    return len(requeued), len(cancelled)


def reap_expired_leases(session: Session) -> int:
    """Requeue jobs whose lease ran out (their agent vanished); fail them past max attempts.
    Fail jobs whose deadline passed (their agent keeps the lease alive but never finishes):
    the model would take any device as long, so it is not tried again."""
    now = utcnow()
    expired = repository.expired_leases(session, now)
    for job in expired:
        missed = missed_deadline(job, now)
        if missed is not None:
            repository.finish(session, job.id, JobState.failed, missed, now)
            log.warning("job failed: %s", missed, extra={"job_id": job.id})
            continue
        reason = f"lease expired on device {job.claimed_by} (attempt {job.attempts})"
        if job.attempts >= job.max_attempts:
            error = f"{reason}; gave up after {job.max_attempts} attempts"
            repository.finish(session, job.id, JobState.failed, error, now)
            log.warning("job failed: leases expired", extra={"job_id": job.id})
        else:
            repository.back_to_queue(session, job.id, reason, now, count=True)
            log.warning("job requeued: lease expired", extra={"job_id": job.id})
    return len(expired)
