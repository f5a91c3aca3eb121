"""The predictors table's SQL."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, delete, func, or_, select, update
from sqlalchemy.orm import Session

from latlab.server.db import affected
from latlab.server.tables import Predictor

__all__ = [
    "Scope",
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


@dataclass(frozen=True)
class Scope:
    """The versions one of which is current: a device + runtime's predictors for one space
    and its parameters (or for whole models: space None)."""

    device_id: str
    runtime: str
    space: str | None
    space_params: dict[str, Any]

    @classmethod
    def of(cls, row: Predictor) -> Scope:
        return cls(row.device_id, row.runtime, row.space, dict(row.space_params))


def _in_scope(session: Session, scope: Scope, *where: ColumnElement[bool]) -> list[Predictor]:
    """The scope's rows that also meet ``where``, highest version first (the space parameters,
    a JSON column, are compared here)."""
    space = Predictor.space.is_(None) if scope.space is None else Predictor.space == scope.space
    rows = session.scalars(
        select(Predictor)
        .where(
            Predictor.device_id == scope.device_id,
            Predictor.runtime == scope.runtime,
            space,
            *where,
        )
        .order_by(Predictor.version.desc())
    )
    return [r for r in rows if dict(r.space_params) == scope.space_params]


def clear_current(session: Session, scope: Scope) -> None:
    """No version of the scope is current any more."""
    ids = [r.id for r in _in_scope(session, scope, Predictor.current.is_(True))]
    if ids:
        session.execute(update(Predictor).where(Predictor.id.in_(ids)).values(current=False))


def current_of(session: Session, device_id: str) -> list[Predictor]:
    """The device's current predictors (one per runtime and space), newest first."""
    return list(
        session.scalars(
            select(Predictor)
            .where(Predictor.device_id == device_id, Predictor.current.is_(True))
            .order_by(Predictor.created_at.desc())
        )
    )


def current_version(session: Session, scope: Scope) -> Predictor | None:
    """The scope's current version, if one is."""
    rows = _in_scope(session, scope, Predictor.current.is_(True))
    return rows[0] if rows else None


def newest_before(session: Session, scope: Scope, version: int) -> Predictor | None:
    """The scope's highest version below ``version``, if any."""
    rows = _in_scope(session, scope, Predictor.version < version)
    return rows[0] if rows else None


def delete_predictor(session: Session, predictor_id: str) -> int:
    return affected(session.execute(delete(Predictor).where(Predictor.id == predictor_id)))


def names_blob(session: Session, sha256: str) -> bool:
    """Whether a predictor's artifact or plot is this blob."""
    query = select(Predictor.id).where(
        or_(Predictor.artifact_sha256 == sha256, Predictor.plot_sha256 == sha256)
    )
    return session.scalar(query.limit(1)) is not None
