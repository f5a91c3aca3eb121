"""The models table's SQL."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from latlab.server.db import affected
from latlab.server.tables import Model

__all__ = ["add", "delete_model", "existing_ids", "get", "listed", "lock"]


def get(session: Session, model_id: str) -> Model | None:
    return session.get(Model, model_id)


def add(session: Session, model: Model) -> None:
    """Insert the row now (a failure later in the request rolls it back)."""
    session.add(model)
    session.flush()


def listed(session: Session, limit: int, offset: int, newest_first: bool = False) -> list[Model]:
    order = (
        (Model.created_at.desc(), Model.id.desc()) if newest_first else (Model.created_at, Model.id)
    )
    query = select(Model).order_by(*order).limit(limit).offset(offset)
    return list(session.scalars(query))


def counted(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Model)) or 0)


def macs_of(session: Session, model_ids: Collection[str]) -> dict[str, int]:
    """Each of the stored models' multiply-accumulates, where its summary has them."""
    rows = session.execute(select(Model.id, Model.summary).where(Model.id.in_(model_ids)))
    return {i: s["macs"] for i, s in rows if isinstance(s.get("macs"), int)}


def existing_ids(session: Session, model_ids: Collection[str]) -> set[str]:
    """Those of ``model_ids`` that are stored."""
    return set(session.scalars(select(Model.id).where(Model.id.in_(model_ids))))


def lock(session: Session, model_id: str) -> Model | None:
    """The model, locked: a job or measurement naming it waits until this transaction ends."""
    return session.scalar(select(Model).where(Model.id == model_id).with_for_update())


def delete_model(session: Session, model_id: str) -> int:
    """Delete the model's row (everything naming it gone first)."""
    return affected(session.execute(delete(Model).where(Model.id == model_id)))
