"""The predictors table's SQL."""

from __future__ import annotations

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from latlab.server.db import affected
from latlab.server.tables import Predictor

__all__ = [
    "add",
    "clear_current",
    "current_of",
    "current_version",
    "delete_predictor",
    "get",
    "latest_version",
    "listed",
    "names_blob",
    "newest_before",
]


def add(session: Session, row: Predictor) -> None:
    session.add(row)
    session.flush()


def get(session: Session, predictor_id: str) -> Predictor | None:
    return session.get(Predictor, predictor_id)


def listed(session: Session, device_id: str | None) -> list[Predictor]:
    query = select(Predictor).order_by(Predictor.created_at)
    if device_id is not None:
        query = query.where(Predictor.device_id == device_id)
    return list(session.scalars(query))


def latest_version(session: Session, device_id: str, runtime: str) -> int:
    """The highest version of the device + runtime's predictors (0: none yet)."""
    query = select(func.max(Predictor.version)).where(
        Predictor.device_id == device_id, Predictor.runtime == runtime
    )
    return session.scalar(query) or 0


def clear_current(session: Session, device_id: str, runtime: str) -> None:
    """No version of the device + runtime is current any more."""
    session.execute(
        update(Predictor)
        .where(Predictor.device_id == device_id, Predictor.runtime == runtime)
        .values(current=False)
    )


def current_of(session: Session, device_id: str) -> list[Predictor]:
    """The device's current predictors (one per runtime), newest first."""
    return list(
        session.scalars(
            select(Predictor)
            .where(Predictor.device_id == device_id, Predictor.current.is_(True))
            .order_by(Predictor.created_at.desc())
        )
    )


def current_version(session: Session, device_id: str, runtime: str) -> Predictor | None:
    """The device + runtime's current version, if one is."""
    return session.scalar(
        select(Predictor).where(
            Predictor.device_id == device_id,
            Predictor.runtime == runtime,
            Predictor.current.is_(True),
        )
    )


def newest_before(session: Session, device_id: str, runtime: str, version: int) -> Predictor | None:
    """The device + runtime's highest version below ``version``, if any."""
    return session.scalar(
        select(Predictor)
        .where(
            Predictor.device_id == device_id,
            Predictor.runtime == runtime,
            Predictor.version < version,
        )
        .order_by(Predictor.version.desc())
        .limit(1)
    )


def delete_predictor(session: Session, predictor_id: str) -> int:
    return affected(session.execute(delete(Predictor).where(Predictor.id == predictor_id)))


def names_blob(session: Session, sha256: str) -> bool:
    """Whether a predictor's artifact or plot is this blob."""
    query = select(Predictor.id).where(
        or_(Predictor.artifact_sha256 == sha256, Predictor.plot_sha256 == sha256)
    )
    return session.scalar(query.limit(1)) is not None
