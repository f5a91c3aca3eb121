"""The models table's SQL."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.orm import Session

from latlab.server.tables import Model

__all__ = ["add", "existing_ids", "get", "listed"]


def get(session: Session, model_id: str) -> Model | None:
    return session.get(Model, model_id)


def add(session: Session, model: Model) -> None:
    """Insert the row now (a failure later in the request rolls it back)."""
    session.add(model)
    session.flush()


def listed(session: Session, limit: int, offset: int) -> list[Model]:
    query = select(Model).order_by(Model.created_at, Model.id).limit(limit).offset(offset)
    return list(session.scalars(query))


def existing_ids(session: Session, model_ids: Collection[str]) -> set[str]:
    """Those of ``model_ids`` that are stored."""
    return set(session.scalars(select(Model.id).where(Model.id.in_(model_ids))))
