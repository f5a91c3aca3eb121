"""The jobs table in Core SQL: the queue's reads and state changes, one statement each,
built once with bound parameters where their shape is fixed.

The claim and result path runs a few hundred times a second on a busy lab; the ORM's unit of
work (identity map, attribute history, flush ordering) cost more than the statements here.
Rows come back as ``JobRow`` (a plain named row: every column of ``jobs``); the rules of the
state machine (who may do what, which errors) stay in ``latlab.server.jobs.service``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    and_,
    bindparam,
    case,
    delete,
    exists,
    false,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from latlab.schemas import JobPurpose, JobState
from latlab.server.db import affected, in_chunks
from latlab.server.tables import DatasetEntry, Job, LutKernel, Measurement, Model, core_table

__all__ = [
    "JobRow",
    "add",
    "back_to_queue",
    "cancel_pinned_to",
    "cancel_unreferenced",
    "candidate",
    "candidates",
    "delete_ids",
    "delete_of_model",
    "expired_leases",
    "extend",
    "finish",
    "get",
    "has_canary_of_model",
    "lease",
    "listed",
    "lock",
    "lock_of_model",
    "lock_unreferenced",
    "pending_with_key",
    "requeue_held_by",
    "runs_on",
    "state_counts",
]

jobs = core_table(Job)
models = core_table(Model)
measurements = core_table(Measurement)

#: A row of ``jobs``: its columns as attributes (``row.state``, ``row.lease_token``, ...).
JobRow = Row[*tuple[Any, ...]]

QUEUED, LEASED = JobState.queued.value, JobState.leased.value


_LOCK = select(jobs).where(jobs.c.id == bindparam("job_id")).with_for_update()
_LEASE = (
    update(jobs)
    .where(jobs.c.id == bindparam("job_id"), jobs.c.state == QUEUED)
    .values(
        state=LEASED,
        lease_token=bindparam("token"),
        lease_expires_at=bindparam("expires"),
        deadline_at=bindparam("deadline"),
        claimed_by=bindparam("claimant"),
        attempts=jobs.c.attempts + 1,
        updated_at=bindparam("now"),
    )
)
_NOT_COUNTED = case((jobs.c.attempts > 0, jobs.c.attempts - 1), else_=0)


def _queued_values(*, count: bool) -> dict[str, Any]:
    """Back to the queue, the lease gone, ``:reason`` as its error; the attempt taken back
    unless ``count``."""
    values: dict[str, Any] = {
        "state": QUEUED,
        "error": bindparam("reason"),
        "lease_token": None,
        "lease_expires_at": None,
        "deadline_at": None,
        "updated_at": bindparam("now"),
    }
    if not count:
        values["attempts"] = _NOT_COUNTED
    return values


#: Ended (done, failed or cancelled: ``:new_state``), ``:reason`` as its error. The lease
#: token stays (a repeated report of the same lease is recognised by it) except on a cancel.
_FINISHED_VALUES: dict[str, Any] = {
    "state": bindparam("new_state"),
    "error": bindparam("reason"),
    "lease_expires_at": None,
    "deadline_at": None,
    "finished_at": bindparam("now"),
    "updated_at": bindparam("now"),
}

_REQUEUE_HELD_BY = (
    update(jobs)
    .where(jobs.c.claimed_by == bindparam("claimant"), jobs.c.state == LEASED)
    .values(**_queued_values(count=False))
    .returning(jobs.c.id)
)
_BACK_TO_QUEUE = {
    count: update(jobs)
    .where(jobs.c.id == bindparam("job_id"))
    .values(**_queued_values(count=count))
    for count in (False, True)
}
_FINISH = update(jobs).where(jobs.c.id == bindparam("job_id")).values(**_FINISHED_VALUES)
_CANCEL = _FINISH.values(lease_token=None)
_CANCEL_PINNED_TO = (
    update(jobs)
    .where(jobs.c.device_id == bindparam("pinned"), jobs.c.state.in_([QUEUED, LEASED]))
    .values(**_FINISHED_VALUES, lease_token=None)
    .returning(jobs.c.id)
)
_EXTEND = (
    update(jobs)
    .where(jobs.c.id == bindparam("job_id"))
    .values(lease_expires_at=bindparam("expires"), updated_at=bindparam("now"))
)


def _where(
    state: JobState | None,
    model_id: str | None,
    device_id: str | None,
    ids: Sequence[str] | None,
) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if state is not None:
        where.append(jobs.c.state == state.value)
    if model_id is not None:
        where.append(jobs.c.model_id == model_id)
    if device_id is not None:
        where.append(or_(jobs.c.device_id == device_id, jobs.c.claimed_by == device_id))
    if ids is not None:
        where.append(jobs.c.id.in_(ids))
    return where


def listed(
    session: Session,
    *,
    state: JobState | None,
    model_id: str | None,
    device_id: str | None,
    ids: Sequence[str] | None,
    limit: int,
    offset: int,
    newest_first: bool = False,
) -> Sequence[JobRow]:
    """Jobs oldest first (or newest first), each with the id of its measurement
    (``measurement_id``, or None); ``device_id``: pinned to or claimed by that device."""
    query = (
        select(jobs, measurements.c.id.label("measurement_id"))
        .outerjoin(measurements, measurements.c.job_id == jobs.c.id)
        .where(*_where(state, model_id, device_id, ids))
    )
    order = (
        (jobs.c.created_at.desc(), jobs.c.id.desc())
        if newest_first
        else (
            jobs.c.created_at,
            jobs.c.id,
        )
    )
    return session.execute(query.order_by(*order).limit(limit).offset(offset)).all()


def counted(
    session: Session,
    *,
    state: JobState | None,
    model_id: str | None,
    device_id: str | None,
    ids: Sequence[str] | None,
) -> int:
    """How many jobs ``listed`` pages through."""
    query = select(func.count()).select_from(jobs).where(*_where(state, model_id, device_id, ids))
    return int(session.scalar(query) or 0)


def lock(session: Session, job_id: str) -> JobRow | None:
    """The job's row, locked for this transaction (PostgreSQL: FOR UPDATE; SQLite holds the
    write lock already), so concurrent finishes of one job happen one after the other."""
    return session.execute(_LOCK, {"job_id": job_id}).first()


def runs_on(runtimes: Sequence[tuple[str, Sequence[str]]]) -> ColumnElement[bool]:
    """Jobs whose runtime a device advertises with their provider (no providers listed: any)."""
    clauses = [
        jobs.c.runtime == name
        if not providers
        else and_(jobs.c.runtime == name, jobs.c.provider.in_(list(providers)))
        for name, providers in runtimes
    ]
    return or_(*clauses) if clauses else false()


def candidate(session: Session, job_id: str) -> Row[*tuple[Any, ...]] | None:
    """One queued job by id in the candidates' shape (locked), or None."""
    return session.execute(_CANDIDATE, {"job_id": job_id}).first()


def candidates(
    session: Session,
    device_id: str,
    runtimes: Sequence[tuple[str, Sequence[str]]],
    *,
    limit: int,
    offset: int,
) -> Sequence[Row[*tuple[Any, ...]]]:
    """Queued jobs this device's runtimes can run, oldest first, locked (others skipped):
    id, selector, model_id, config, purpose, runtime identity and the model's format and
    size."""
    query = _candidates(tuple((name, tuple(providers)) for name, providers in runtimes))
    params = {"device_id": device_id, "limit": limit, "offset": offset}
    return session.execute(query, params).all()


_CANDIDATE_COLUMNS = (
    jobs.c.id,
    jobs.c.selector,
    jobs.c.model_id,
    jobs.c.config,
    jobs.c.purpose,
    jobs.c.runtime_identity,
    models.c.format.label("model_format"),
    models.c.size_bytes.label("model_size_bytes"),
)
_CANDIDATE = (
    select(*_CANDIDATE_COLUMNS)
    .join(models, models.c.id == jobs.c.model_id)
    .where(jobs.c.id == bindparam("job_id"), jobs.c.state == QUEUED)
    .with_for_update(of=jobs)
)


@functools.lru_cache(maxsize=256)
def _candidates(runtimes: tuple[tuple[str, tuple[str, ...]], ...]) -> Select[Any]:
    """The candidates query for one set of advertised runtimes, built once (a lab's devices
    advertise a handful of distinct sets): no statement is built or keyed per claim."""
    return (
        select(*_CANDIDATE_COLUMNS)
        .join(models, models.c.id == jobs.c.model_id)
        .where(
            jobs.c.state == QUEUED,
            or_(jobs.c.device_id == bindparam("device_id"), jobs.c.device_id.is_(None)),
            runs_on(runtimes),
        )
        .order_by(jobs.c.created_at, jobs.c.id)
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
        .with_for_update(of=jobs, skip_locked=True)
    )


def lease(
    session: Session,
    job_id: str,
    device_id: str,
    token: str,
    expires: datetime,
    deadline: datetime,
    now: datetime,
) -> bool:
    """Lease a queued job until ``expires`` (heartbeats extend it) and at most until
    ``deadline`` (compare-and-set on its state); False if another device took it."""
    params = {"job_id": job_id, "claimant": device_id, "token": token, "deadline": deadline}
    result = session.execute(_LEASE, {**params, "expires": expires, "now": now})
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def requeue_held_by(session: Session, device_id: str, reason: str, now: datetime) -> list[str]:
    """Jobs this device holds back to the queue, the attempt not counted; their ids."""
    result = session.execute(
        _REQUEUE_HELD_BY, {"claimant": device_id, "reason": reason, "now": now}
    )
    return list(result.scalars())


def back_to_queue(
    session: Session, job_id: str, reason: str, now: datetime, *, count: bool
) -> None:
    session.execute(_BACK_TO_QUEUE[count], {"job_id": job_id, "reason": reason, "now": now})


def finish(
    session: Session, job_id: str, state: JobState, error: str | None, now: datetime
) -> None:
    """End the job: done, failed or cancelled (its lease gone)."""
    statement = _CANCEL if state is JobState.cancelled else _FINISH
    session.execute(
        statement, {"job_id": job_id, "new_state": state.value, "reason": error, "now": now}
    )


def cancel_pinned_to(session: Session, device_id: str, reason: str, now: datetime) -> list[str]:
    """Pending jobs pinned to this device cancelled; their ids."""
    params = {"pinned": device_id, "new_state": JobState.cancelled.value}
    result = session.execute(_CANCEL_PINNED_TO, {**params, "reason": reason, "now": now})
    return list(result.scalars())


def expired_leases(session: Session, now: datetime) -> Sequence[JobRow]:
    """Leased jobs whose lease ran out or whose deadline passed, locked (those another reaper
    holds skipped)."""
    query = (
        select(jobs)
        .where(
            jobs.c.state == LEASED,
            or_(jobs.c.lease_expires_at < now, jobs.c.deadline_at < now),
        )
        .with_for_update(skip_locked=True)
    )
    return session.execute(query).all()


def extend(session: Session, job_id: str, expires: datetime, now: datetime) -> None:
    session.execute(_EXTEND, {"job_id": job_id, "expires": expires, "now": now})


# --------------------------------------------------------------------------- the ORM side


def add(session: Session, job: Job) -> None:
    """Insert the job in a savepoint: an identical pending job inserted concurrently makes it
    an ``IntegrityError`` (the unique pending dedup key) that leaves the transaction usable."""
    with session.begin_nested():
        session.add(job)


def get(session: Session, job_id: str) -> Job | None:
    return session.get(Job, job_id)


def pending_with_key(session: Session, dedup_key: str) -> Job | None:
    """The queued or leased job with this dedup key."""
    return session.scalar(
        select(Job).where(Job.dedup_key == dedup_key, Job.state.in_([QUEUED, LEASED]))
    )


def state_counts(session: Session) -> dict[str, int]:
    """How many jobs are in each state."""
    rows = session.execute(select(jobs.c.state, func.count()).group_by(jobs.c.state))
    return {state: count for state, count in rows}


# --------------------------------------------------------------------------- deletes

_entries = core_table(DatasetEntry)
_kernels = core_table(LutKernel)
#: Jobs no dataset entry and no LUT kernel points at (any more: the caller deleted its own).
_UNREFERENCED = and_(
    ~exists().where(_entries.c.job_id == jobs.c.id),
    ~exists().where(_kernels.c.job_id == jobs.c.id),
)


def cancel_unreferenced(
    session: Session, job_ids: Sequence[str], reason: str, now: datetime
) -> int:
    """The pending jobs among ``job_ids`` that no dataset entry or LUT kernel needs, cancelled
    (kept as history; an agent timing one loses its lease at its next heartbeat); how many."""
    cancelled = 0
    for chunk in in_chunks(sorted(set(job_ids))):
        cancelled += affected(
            session.execute(
                update(jobs)
                .where(jobs.c.id.in_(chunk), jobs.c.state.in_([QUEUED, LEASED]), _UNREFERENCED)
                .values(**_FINISHED_VALUES, lease_token=None),
                {"new_state": JobState.cancelled.value, "reason": reason, "now": now},
            )
        )
    return cancelled


def lock_unreferenced(session: Session, job_ids: Sequence[str]) -> list[str]:
    """Those of ``job_ids`` that no dataset entry or LUT kernel needs, locked (a result being
    stored for one is waited for, so it is deleted with the job)."""
    found: list[str] = []
    for chunk in in_chunks(sorted(set(job_ids))):
        found += session.scalars(
            select(jobs.c.id).where(jobs.c.id.in_(chunk), _UNREFERENCED).with_for_update(of=jobs)
        )
    return found


def lock_of_model(session: Session, model_id: str) -> list[str]:
    """The ids of the model's jobs, locked."""
    return list(
        session.scalars(select(jobs.c.id).where(jobs.c.model_id == model_id).with_for_update())
    )


def has_canary_of_model(session: Session, model_id: str) -> bool:
    """Whether the model was ever a device canary's reference (a canary job names it)."""
    query = select(jobs.c.id).where(
        jobs.c.model_id == model_id, jobs.c.purpose == JobPurpose.canary.value
    )
    return session.scalar(query.limit(1)) is not None


def delete_ids(session: Session, job_ids: Sequence[str]) -> int:
    """Delete these jobs (their measurements and references gone first); how many."""
    deleted = 0
    for chunk in in_chunks(sorted(set(job_ids))):
        deleted += affected(session.execute(delete(jobs).where(jobs.c.id.in_(chunk))))
    return deleted


def delete_of_model(session: Session, model_id: str) -> int:
    """Delete the model's jobs (their measurements and references gone first); how many."""
    return affected(session.execute(delete(jobs).where(jobs.c.model_id == model_id)))
