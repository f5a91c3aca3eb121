"""FastAPI dependencies: the app's state, the request's session, who is calling."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Header, Query, Request
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from server.auth import DEVICE_TOKEN_PREFIX, bearer_token, hash_token, key_matches
from server.blobstore import BlobStore
from server.config import Settings
from server.db import session_scope, utcnow
from server.errors import Forbidden, Unauthorized
from server.notify import JobNotifier
from server.prometheus import Metrics

if TYPE_CHECKING:
    from server.background import BackgroundWork
    from server.predict.cache import PredictorCache
from server.tables import Device

__all__ = [
    "MAX_INT32",
    "AppState",
    "AuthHeader",
    "CurrentDevice",
    "DeviceRef",
    "Offset",
    "SessionDep",
    "StateDep",
    "UserAuth",
    "UserOrDevice",
    "UserWrite",
]


@dataclass
class AppState:
    settings: Settings
    sessions: sessionmaker[Session]
    blobs: BlobStore
    notifier: JobNotifier
    background: BackgroundWork
    predictors: PredictorCache
    metrics: Metrics


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.latlab
    return state


StateDep = Annotated[AppState, Depends(_state)]


def _session(state: StateDep) -> Iterator[Session]:
    """One transaction per request: committed before the answer is sent, or rolled back."""
    with session_scope(state.sessions) as session:
        yield session


SessionDep = Annotated[Session, Depends(_session, scope="function")]

AuthHeader = Annotated[str | None, Header(alias="Authorization", include_in_schema=False)]

#: How stale a device's last_seen_at may get (seconds; at most a tenth of offline_after_s)
#: before an agent call refreshes it: a write on every call serialises busy agents.
LAST_SEEN_RESOLUTION_S = 5.0

#: Integers the database stores as 32-bit (PostgreSQL ``integer``): ids and offsets beyond
#: them are a 422, not a database error.
MAX_INT32 = 2**31 - 1
Offset = Annotated[int, Query(ge=0, le=MAX_INT32)]


def _user_scope(state: AppState, authorization: str | None) -> str:
    """``write`` or ``read``: the scope of the caller's API key."""
    token = bearer_token(authorization)
    if token is None:
        raise Unauthorized("missing 'Authorization: Bearer <api key>' header")
    if key_matches(token, state.settings.api_keys):
        return "write"
    if key_matches(token, state.settings.read_api_keys):
        return "read"
    if token.startswith(DEVICE_TOKEN_PREFIX):
        raise Forbidden("a device token cannot make user calls; use an API key")
    raise Unauthorized("unknown API key")


def _user(state: StateDep, authorization: AuthHeader = None) -> None:
    _user_scope(state, authorization)


def _user_write(state: StateDep, authorization: AuthHeader = None) -> None:
    if _user_scope(state, authorization) != "write":
        raise Forbidden("this API key is read-only; the call needs a read-write key")


#: Any user API key (read-only or read-write): reads and predict queries.
UserAuth = Depends(_user)
#: A read-write API key: everything that stores or changes something.
UserWrite = Depends(_user_write)


@dataclass(frozen=True)
class DeviceRef:
    """The calling device, authenticated in a short transaction of its own (so that a
    long-polling claim holds no database transaction while it waits)."""

    id: str
    name: str
    descriptor: dict[str, Any]


def _device(state: StateDep, authorization: AuthHeader = None) -> DeviceRef:
    token = bearer_token(authorization)
    if token is None:
        raise Unauthorized("missing 'Authorization: Bearer <device token>' header")
    with session_scope(state.sessions) as session:
        device = session.scalar(select(Device).where(Device.token_hash == hash_token(token)))
        if device is None or device.revoked_at is not None:
            if key_matches(token, state.settings.user_keys):
                raise Forbidden("an API key cannot make agent calls; use the device token")
            raise Unauthorized("unknown or revoked device token")
        now = utcnow()
        # a write per agent call would serialise busy agents on their device rows
        resolution = min(LAST_SEEN_RESOLUTION_S, state.settings.offline_after_s / 10)
        if (now - device.last_seen_at).total_seconds() > resolution:
            device.last_seen_at = now
        return DeviceRef(id=device.id, name=device.name, descriptor=dict(device.descriptor))


CurrentDevice = Annotated[DeviceRef, Depends(_device)]


def _user_or_device(state: StateDep, authorization: AuthHeader = None) -> None:
    token = bearer_token(authorization)
    if token is not None and key_matches(token, state.settings.user_keys):
        return
    _device(state, authorization)


UserOrDevice = Depends(_user_or_device)
