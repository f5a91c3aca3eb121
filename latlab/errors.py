"""Errors of the shared core and of the client.

::

    LatlabError
    ├── ModelInvalid        a model file that cannot be accepted (bad bytes, external data, ...)
    ├── InputRejected       untrusted input past a bound (nested too deep, ...)
    └── ApiError            the server answered with an error (status, code, message)
        └── ServerUnreachable   no answer at all (connection refused, timeout)
"""

from __future__ import annotations

__all__ = ["ApiError", "InputRejected", "LatlabError", "ModelInvalid", "ServerUnreachable"]


class LatlabError(Exception):
    """Base of every error latlab raises on purpose."""


class ModelInvalid(LatlabError):
    """The model file is not something latlab can accept; the message says why."""


class InputRejected(LatlabError, ValueError):
    """Untrusted input past one of ``latlab.untrusted``'s bounds; the message says which. A
    ``ValueError`` too, so a pydantic validator that raises it makes a validation error."""


class ApiError(LatlabError):
    """The server answered with a 4xx/5xx."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class ServerUnreachable(ApiError):
    """No answer at all (status 0): the message says from where and why."""

    def __init__(self, message: str) -> None:
        super().__init__(0, "unreachable", message)

    def __str__(self) -> str:
        return self.message
