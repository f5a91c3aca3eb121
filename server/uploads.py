"""Request bodies read under size limits: the declared length is checked first, and the
bytes are counted while they stream in and while an upload is copied, so a lying client is
stopped too."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from pathlib import Path
from typing import IO, Any

from fastapi import Request, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from latlab.server.config import Settings
from latlab.server.errors import PayloadTooLarge

__all__ = [
    "MULTIPART_SLACK_BYTES",
    "BodyLimit",
    "check_declared_length",
    "copy_limited",
    "safe_filename",
    "scratch_file",
]

#: Room for the multipart framing around the files themselves.
MULTIPART_SLACK_BYTES = 64 * 1024
CHUNK_BYTES = 1 << 20


@contextlib.contextmanager
def scratch_file(settings: Settings, suffix: str = "") -> Iterator[Path]:
    """A new empty file in the upload folder, for bytes on their way into the blob store
    (an upload, an exported arch, a micro-model, a predictor's artifact). The blob store
    consumes it on success; whatever is left when the block ends, by success or by any error,
    is removed, so a failing request or background step leaves no file behind."""
    work_dir = settings.upload_dir
    work_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=work_dir, suffix=suffix)
    os.close(fd)
    path = Path(name)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def check_declared_length(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if (
        declared is not None
        and declared.isdigit()
        and int(declared) > limit + MULTIPART_SLACK_BYTES
    ):
        raise PayloadTooLarge(f"upload of {declared} bytes exceeds the limit of {limit} bytes")


def safe_filename(name: str | None, default: str) -> str:
    """An uploaded file's name as stored: its last path component, without control
    characters, at most 255 characters (the default where nothing is left)."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(c for c in base if c.isprintable())[:255].strip()
    return cleaned if cleaned not in ("", ".", "..") else default


def copy_limited(src: UploadFile, dest: IO[bytes], limit: int) -> int:
    """Copy the upload into ``dest``; ``PayloadTooLarge`` once more than ``limit`` bytes came."""
    total = 0
    while chunk := src.file.read(CHUNK_BYTES):
        total += len(chunk)
        if total > limit:
            raise PayloadTooLarge(f"upload exceeds the limit of {limit} bytes")
        dest.write(chunk)
    return total


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyLimit:
    """Every request body is counted while it streams in: a multipart upload up to
    ``upload_bytes`` (the endpoints then hold each file to its own limit), anything else up to
    ``json_bytes``. A declared length over the limit is refused before a byte is read; a body
    without one is cut off when it passes the limit. Both answer 413. A NUL in the URL is a
    400 (no database takes it)."""

    def __init__(self, app: App, *, json_bytes: int, upload_bytes: int) -> None:
        self.app, self.json_bytes, self.upload_bytes = app, json_bytes, upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope["path"] or b"%00" in scope.get("query_string", b""):
            await _answer(send, 400, "bad_request", "the URL may not contain NUL characters")
            return
        headers = dict(scope["headers"])
        multipart = headers.get(b"content-type", b"").startswith(b"multipart/form-data")
        limit = self.upload_bytes + MULTIPART_SLACK_BYTES if multipart else self.json_bytes
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await _answer(send, 413, "too_large", _too_large(int(declared), limit))
            return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge(limit)
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except _BodyTooLarge as exc:
            if started:
                raise
            await _answer(send, 413, "too_large", _too_large(None, exc.limit))


class _BodyTooLarge(StarletteHTTPException):
    """Raised from ``receive``: an HTTPException, so FastAPI's body parsing lets it through
    and the error handlers answer 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, _too_large(None, limit))
        self.limit = limit


def _too_large(size: int | None, limit: int) -> str:
    what = f"a body of {size} bytes" if size is not None else "the body"
    return f"{what} exceeds the limit of {limit} bytes"


async def _answer(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(body)),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
