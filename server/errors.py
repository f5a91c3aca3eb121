"""The server's exception family, mapped once to HTTP answers (``install_error_handlers``).

::

    ServerError                 500 internal (never raised on purpose)
    ├── BadRequest              400 bad_request
    ├── Unauthorized            401 unauthorized   (no or unknown bearer token)
    ├── Forbidden               403 forbidden      (a token of the wrong kind)
    ├── NotFound                404 not_found
    ├── Conflict                409 conflict       (stale lease, job already finished, ...)
    │   └── DeadlinePassed      409 deadline_passed (a result after its job's deadline)
    ├── PayloadTooLarge         413 too_large
    ├── InvalidInput            422 invalid        (a model that fails validation, ...)
    │                           (any LatlabError that reaches a request is a 422 too)
    └── Unavailable             503 unavailable    (the database is down or not migrated)

Every error answer has the body ``{"error": {"code": ..., "message": ...}}``.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from latlab.errors import LatlabError

__all__ = [
    "BadRequest",
    "Conflict",
    "DeadlinePassed",
    "Forbidden",
    "InvalidInput",
    "NotFound",
    "PayloadTooLarge",
    "ServerError",
    "Unauthorized",
    "Unavailable",
    "install_error_handlers",
]

log = logging.getLogger(__name__)


class ServerError(Exception):
    status = 500
    code = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ServerError):
    status, code = 400, "bad_request"


class Unauthorized(ServerError):
    status, code = 401, "unauthorized"


class Forbidden(ServerError):
    status, code = 403, "forbidden"


class NotFound(ServerError):
    status, code = 404, "not_found"


class Conflict(ServerError):
    status, code = 409, "conflict"


class DeadlinePassed(Conflict):
    """A result came after its job's deadline: refused, and the job ends failed."""

    code = "deadline_passed"


class PayloadTooLarge(ServerError):
    status, code = 413, "too_large"


class InvalidInput(ServerError):
    status, code = 422, "invalid"


class Unavailable(ServerError):
    status, code = 503, "unavailable"


def _error(status: int, code: str, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServerError)
    async def _server_error(_: Request, exc: ServerError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message)

    @app.exception_handler(LatlabError)
    async def _latlab_error(_: Request, exc: LatlabError) -> JSONResponse:
        # the core's, the LUT's and the predictors' errors are about the request's input: an
        # arch the space does not have, a kernel no LUT entry covers, an unreadable artifact
        return _error(422, "invalid", str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            if err.get("type") == "default_factory_not_called":
                continue  # a field whose default depends on one already named as invalid
            where = ".".join(str(p) for p in err.get("loc", ()))
            parts.append(f"{where}: {err.get('msg', 'invalid')}")
        return _error(422, "invalid", "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
            exc.status_code, "http_error"
        )
        return _error(exc.status_code, code, str(exc.detail))

    @app.exception_handler(SQLAlchemyTimeoutError)
    async def _busy(request: Request, exc: SQLAlchemyTimeoutError) -> JSONResponse:
        log.warning(
            "no database connection or lock free: answering 503",
            extra={"path": request.url.path, "reason": str(exc)},
        )
        return _retry_shortly()

    @app.exception_handler(OperationalError)
    async def _locked(request: Request, exc: OperationalError) -> JSONResponse:
        if "database is locked" in str(exc.orig):  # SQLite, held by another process too long
            log.warning("SQLite database locked: answering 503", extra={"path": request.url.path})
            return _retry_shortly()
        return await _unexpected(request, exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path})
        return _error(500, "internal", "internal server error")


def _retry_shortly() -> JSONResponse:
    response = _error(503, "unavailable", "the server is busy; retry shortly")
    response.headers["Retry-After"] = "1"
    return response
