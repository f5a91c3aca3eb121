"""The devices table's SQL. Core statements where a request pays for it: every agent call
authenticates its device (one indexed read, and a write of ``last_seen_at`` at most every few
seconds); the ORM for the rest."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, func, select, update
from sqlalchemy.orm import Session

from latlab.schemas import DeviceSource
from latlab.server.tables import Device, core_table

__all__ = [
    "add",
    "by_ids",
    "by_token_hash",
    "count_online",
    "get",
    "imported_named",
    "listed",
    "named",
    "runnable",
    "seen",
]

devices = core_table(Device)

_BY_TOKEN_HASH = select(
    devices.c.id,
    devices.c.name,
    devices.c.descriptor,
    devices.c.last_seen_at,
    devices.c.revoked_at,
).where(devices.c.token_hash == bindparam("token_hash"))
_SEEN = (
    update(devices)
    .where(devices.c.id == bindparam("device_id"))
    .values(last_seen_at=bindparam("now"))
)


def by_token_hash(session: Session, token_hash: str) -> Row[*tuple[Any, ...]] | None:
    """id, name, descriptor, last_seen_at and revoked_at of the device with this token."""
    return session.execute(_BY_TOKEN_HASH, {"token_hash": token_hash}).first()


def seen(session: Session, device_id: str, now: datetime) -> None:
    session.execute(_SEEN, {"device_id": device_id, "now": now})


def add(session: Session, device: Device) -> None:
    session.add(device)
    session.flush()


def get(session: Session, device_id: str) -> Device | None:
    return session.get(Device, device_id)


def by_ids(session: Session, device_ids: Sequence[str]) -> list[Device]:
    """These devices, in this order (each must exist)."""
    return [session.get_one(Device, d) for d in device_ids]


def named(session: Session, name: str) -> list[Device]:
    """Every device of this name, oldest first."""
    return list(
        session.scalars(select(Device).where(Device.name == name).order_by(Device.created_at))
    )


def imported_named(session: Session, name: str) -> Device | None:
    """The oldest imported device of this name."""
    return session.scalar(
        select(Device)
        .where(Device.name == name, Device.source == DeviceSource.imported.value)
        .order_by(Device.created_at)
        .limit(1)
    )


def runnable(session: Session) -> list[Device]:
    """Devices that can run jobs: registered by an agent, not revoked; oldest first."""
    return list(
        session.scalars(
            select(Device)
            .where(Device.revoked_at.is_(None), Device.source == DeviceSource.agent.value)
            .order_by(Device.created_at)
        )
    )


def listed(session: Session) -> list[Device]:
    return list(session.scalars(select(Device).order_by(Device.created_at)))


def count_online(session: Session, since: datetime) -> int:
    """Agent devices, not revoked, heard from since ``since``."""
    query = select(func.count()).where(
        Device.revoked_at.is_(None),
        Device.source == DeviceSource.agent.value,
        Device.last_seen_at >= since,
    )
    return session.scalar(query) or 0
