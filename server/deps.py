"""FastAPI dependencies: the app's state, the request's session, who is calling."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sized
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from fastapi import Depends, Header, Query, Request, Response, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from latlab.server.auth import DEVICE_TOKEN_PREFIX, bearer_token, hash_token, key_matches
from latlab.server.blobstore import BlobStore
from latlab.server.config import Settings
from latlab.server.db import end_session, session_scope, utcnow
from latlab.server.errors import Forbidden, Unauthorized
from latlab.server.notify import JobNotifier
from latlab.server.prometheus import Metrics

if TYPE_CHECKING:
    from latlab.server.background import BackgroundWork
    from latlab.server.canary.service import CanaryModels
    from latlab.server.predict.cache import PredictorCache
from latlab.server.devices import repository as devices

__all__ = [
    "MAX_INT32",
    "TOTAL_COUNT",
    "TOTAL_COUNT_HEADER",
    "AppState",
    "AuthHeader",
    "DeviceRef",
    "DeviceToken",
    "Offset",
    "Scope",
    "SessionDep",
    "StateDep",
    "UserAuth",
    "UserOrDevice",
    "UserWrite",
    "as_device",
    "authenticate_device",
    "key_scope",
    "set_total_count",
]


@dataclass
class AppState:
    settings: Settings
    sessions: sessionmaker[Session]
    blobs: BlobStore
    canaries: CanaryModels
    notifier: JobNotifier
    background: BackgroundWork
    predictors: PredictorCache
    metrics: Metrics


async def _state(request: Request) -> AppState:
    state: AppState = request.app.state.latlab
    return state


StateDep = Annotated[AppState, Depends(_state)]


async def _session(state: StateDep) -> AsyncIterator[Session]:
    """One transaction per request: committed before the answer is sent, or rolled back.
    Opening a session does no I/O; the commit (or rollback) and the return of its connection
    run on a worker thread, the endpoint's work on another hop: two, not three."""
    session = state.sessions()
    try:
        yield session
    except BaseException:
        await run_in_threadpool(end_session, session, commit=False)
        raise
    await run_in_threadpool(end_session, session, commit=True)


SessionDep = Annotated[Session, Depends(_session, scope="function")]

AuthHeader = Annotated[str | None, Header(alias="Authorization", include_in_schema=False)]

# The OpenAPI document's security schemes (what /docs's Authorize button fills in); the
# checks below read the header themselves, to say what is wrong with it.
_API_KEY = HTTPBearer(
    auto_error=False,
    scheme_name="apiKey",
    description="A user API key (LATLAB_API_KEYS read-write, LATLAB_READ_API_KEYS read-only)",
)
_DEVICE_TOKEN = HTTPBearer(
    auto_error=False,
    scheme_name="deviceToken",
    description="The device token an agent got when it registered",
)
ApiKeyScheme = Annotated[HTTPAuthorizationCredentials | None, Security(_API_KEY)]
DeviceTokenScheme = Annotated[HTTPAuthorizationCredentials | None, Security(_DEVICE_TOKEN)]

T = TypeVar("T")

#: How stale a device's last_seen_at may get (seconds; at most a tenth of offline_after_s)
#: before an agent call refreshes it: a write on every call serialises busy agents.
LAST_SEEN_RESOLUTION_S = 5.0

#: Integers the database stores as 32-bit (PostgreSQL ``integer``): ids and offsets beyond
#: them are a 422, not a database error.
MAX_INT32 = 2**31 - 1
Offset = Annotated[int, Query(ge=0, le=MAX_INT32)]
#: A paged list's header: how many rows match its filters in all (the page is ``limit`` of them).
TOTAL_COUNT_HEADER = "X-Total-Count"


def set_total_count(
    response: Response, page: Sized, limit: int, offset: int, count: Callable[[], int]
) -> None:
    """``X-Total-Count`` of a page: a page short of ``limit`` (and not past the end) says the
    total itself; only a full page, or an empty one past the end, costs a ``COUNT`` (the SDK
    polls ``GET /jobs?ids=...`` several times a second)."""
    short = len(page) < limit and (len(page) > 0 or offset == 0)
    response.headers[TOTAL_COUNT_HEADER] = str(offset + len(page) if short else count())


TOTAL_COUNT: dict[int | str, dict[str, Any]] = {
    200: {
        "headers": {
            TOTAL_COUNT_HEADER: {
                "description": "rows matching the filters in all",
                "schema": {"type": "integer"},
            }
        }
    }
}


Scope = Literal["read", "write"]


def key_scope(settings: Settings, key: str) -> Scope | None:
    """``write`` or ``read`` for a configured user API key, None for anything else (the API's
    bearer keys and the dashboard's sign-in)."""
    if key_matches(key, settings.api_keys):
        return "write"
    if key_matches(key, settings.read_api_keys):
        return "read"
    return None


def _user_scope(state: AppState, authorization: str | None) -> Scope:
    """``write`` or ``read``: the scope of the caller's API key."""
    token = bearer_token(authorization)
    if token is None:
        raise Unauthorized("missing 'Authorization: Bearer <api key>' header")
    scope = key_scope(state.settings, token)
    if scope is not None:
        return scope
    if token.startswith(DEVICE_TOKEN_PREFIX):
        raise Forbidden("a device token cannot make user calls; use an API key")
    raise Unauthorized("unknown API key")


async def _user(state: StateDep, _: ApiKeyScheme = None, authorization: AuthHeader = None) -> None:
    _user_scope(state, authorization)


async def _user_write(
    state: StateDep, _: ApiKeyScheme = None, authorization: AuthHeader = None
) -> None:
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


async def _device_token(_: DeviceTokenScheme = None, authorization: AuthHeader = None) -> str:
    token = bearer_token(authorization)
    if token is None:
        raise Unauthorized("missing 'Authorization: Bearer <device token>' header")
    return token


#: The calling device's bearer token; ``as_device`` checks it in the work's own transaction.
DeviceToken = Annotated[str, Depends(_device_token)]


def authenticate_device(session: Session, settings: Settings, token: str) -> DeviceRef:
    """The device whose token this is; 401 for an unknown or revoked one."""
    device = devices.by_token_hash(session, hash_token(token))
    if device is None or device.revoked_at is not None:
        if key_matches(token, settings.user_keys):
            raise Forbidden("an API key cannot make agent calls; use the device token")
        raise Unauthorized("unknown or revoked device token")
    now = utcnow()
    # a write per agent call would serialise busy agents on their device rows
    resolution = min(LAST_SEEN_RESOLUTION_S, settings.offline_after_s / 10)
    if (now - device.last_seen_at).total_seconds() > resolution:
        devices.seen(session, device.id, now)
    return DeviceRef(id=device.id, name=device.name, descriptor=dict(device.descriptor))


async def as_device(state: AppState, token: str, work: Callable[[Session, DeviceRef], T]) -> T:
    """Authenticate the calling device and do its work in one transaction, on one worker
    thread: an agent call costs one session and one hop, however busy the lab."""

    def run() -> T:
        with session_scope(state.sessions) as session:
            return work(session, authenticate_device(session, state.settings, token))

    return await run_in_threadpool(run)


def _user_or_device(
    state: StateDep,
    _key: ApiKeyScheme = None,
    _token: DeviceTokenScheme = None,
    authorization: AuthHeader = None,
) -> None:
    token = bearer_token(authorization)
    if token is not None and key_matches(token, state.settings.user_keys):
        return
    if token is None:
        raise Unauthorized("missing 'Authorization: Bearer <api key or device token>' header")
    with session_scope(state.sessions) as session:
        authenticate_device(session, state.settings, token)


UserOrDevice = Depends(_user_or_device)
