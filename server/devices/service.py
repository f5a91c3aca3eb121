"""Devices: registration with the enrollment key, heartbeats, online status, revocation.

Wherever a user names a device (a path, a body, a query filter) an id or the device's name is
accepted: ``get_device`` and ``job_device`` resolve either, once, and callers go on with the
resolved device's id. A name that several devices share is refused (422) with their ids.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from pydantic import SecretStr
from sqlalchemy.orm import Session

from latlab.schemas import DeviceDescriptor, DeviceOut, DeviceRegistered, DeviceSource, RegisterIn
from latlab.server.auth import hash_token, key_matches, new_device_token
from latlab.server.db import by_id_or_prefix, utcnow
from latlab.server.devices import repository
from latlab.server.errors import InvalidInput, NotFound, Unauthorized
from latlab.server.tables import Device
from latlab.untrusted import excerpt

__all__ = [
    "agent_devices",
    "count_online",
    "device_filter",
    "device_out",
    "get_device",
    "job_device",
    "list_devices",
    "register_device",
    "revoke_device",
    "update_descriptor",
]

log = logging.getLogger(__name__)


def register_device(
    session: Session, enroll_key: SecretStr, presented: str | None, body: RegisterIn
) -> DeviceRegistered:
    if presented is None or not key_matches(presented, [enroll_key]):
        raise Unauthorized("registration needs 'Authorization: Bearer <enrollment key>'")
    token = new_device_token()
    now = utcnow()
    device = Device(
        id=uuid.uuid4().hex,
        name=body.name,
        token_hash=hash_token(token),
        descriptor=body.descriptor.model_dump(mode="json"),
        source=DeviceSource.agent.value,
        created_at=now,
        last_seen_at=now,
    )
    repository.add(session, device)
    return DeviceRegistered(device_id=device.id, token=token)


def count_online(session: Session, offline_after_s: float) -> int:
    """Agent devices, not revoked, heard from within ``offline_after_s`` (``device_out``'s
    ``online``, counted in SQL)."""
    return repository.count_online(session, utcnow() - timedelta(seconds=offline_after_s))


def device_out(device: Device, offline_after_s: float) -> DeviceOut:
    online = utcnow() - device.last_seen_at <= timedelta(seconds=offline_after_s)
    return DeviceOut(
        id=device.id,
        name=device.name,
        source=DeviceSource(device.source),
        descriptor=DeviceDescriptor.model_validate(device.descriptor),
        created_at=device.created_at,
        last_seen_at=device.last_seen_at,
        online=online and device.revoked_at is None and device.source == DeviceSource.agent,
    )


def revoke_device(session: Session, device_id: str) -> tuple[Device, bool]:
    """Revoke the device's token; (device, newly revoked). Revoking twice is a no-op."""
    device = get_device(session, device_id)
    if device.source != DeviceSource.agent.value:
        raise InvalidInput(f"device {device.id} is an imported device: it has no token")
    if device.revoked_at is not None:
        return device, False
    device.revoked_at = utcnow()
    log.warning("device revoked", extra={"device_id": device.id})
    return device, True


def get_device(session: Session, ref: str) -> Device:
    """The device whose id is ``ref``, or else the one named ``ref``."""
    device = repository.get(session, ref)
    if device is not None:
        return device
    named = repository.named(session, ref)
    if not named:  # a unique prefix of an id
        return by_id_or_prefix(session, ref, repository.get, Device.id, "device")
    return _one_named(ref, named)


def job_device(session: Session, ref: str) -> Device:
    """A device a job may name (by id or name): registered by an agent, not revoked. Of
    several devices of one name, the one that can run jobs is meant."""
    device = repository.get(session, ref)
    if device is None:
        named = repository.named(session, ref)
        runnable = [d for d in named if d.revoked_at is None and d.source == DeviceSource.agent]
        if named:
            device = _one_named(ref, runnable or named)
        else:  # a unique prefix of an id
            device = by_id_or_prefix(session, ref, repository.get, Device.id, "device")
    if device.revoked_at is not None:
        raise NotFound(f"no device {excerpt(ref)}")
    if device.source != DeviceSource.agent:
        raise InvalidInput(f"device {excerpt(ref)} is imported (published data): it runs no jobs")
    return device


def device_filter(session: Session, ref: str | None) -> str | None:
    """The device id a query filter given as an id or a name means (None: no filter); an
    unknown device is a 404, not an empty list."""
    return None if ref is None else get_device(session, ref).id


def _one_named(ref: str, devices: list[Device]) -> Device:
    if not devices:
        raise NotFound(f"no device {excerpt(ref)} (no device has this id or name)")
    if len(devices) > 1:
        ids = ", ".join(d.id for d in devices)
        raise InvalidInput(f"{len(devices)} devices are named {excerpt(ref)} ({ids}): give the id")
    return devices[0]


def agent_devices(session: Session) -> list[Device]:
    """Devices that can run jobs (what a selector is matched against), oldest first."""
    return repository.runnable(session)


def list_devices(session: Session) -> list[Device]:
    return repository.listed(session)


def update_descriptor(session: Session, device_id: str, descriptor: DeviceDescriptor) -> None:
    get_device(session, device_id).descriptor = descriptor.model_dump(mode="json")
