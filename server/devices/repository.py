"""The devices table in Core SQL, where a request pays for it: every agent call authenticates
its device (one indexed read, and a write of ``last_seen_at`` at most every few seconds)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, select, update
from sqlalchemy.orm import Session

from latlab.server.tables import Device, core_table

__all__ = ["by_token_hash", "seen"]

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
