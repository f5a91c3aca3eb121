"""Multipart uploads read under a size limit: the declared length is checked first, and the
bytes are counted while they are copied, so a lying client is stopped too."""

from __future__ import annotations

from typing import IO

from fastapi import Request, UploadFile

from server.errors import PayloadTooLarge

__all__ = ["MULTIPART_SLACK_BYTES", "check_declared_length", "copy_limited"]

#: Room for the multipart framing around the files themselves.
MULTIPART_SLACK_BYTES = 64 * 1024
CHUNK_BYTES = 1 << 20


def check_declared_length(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if (
        declared is not None
        and declared.isdigit()
        and int(declared) > limit + MULTIPART_SLACK_BYTES
    ):
        raise PayloadTooLarge(f"upload of {declared} bytes exceeds the limit of {limit} bytes")


def copy_limited(src: UploadFile, dest: IO[bytes], limit: int) -> int:
    """Copy the upload into ``dest``; ``PayloadTooLarge`` once more than ``limit`` bytes came."""
    total = 0
    while chunk := src.file.read(CHUNK_BYTES):
        total += len(chunk)
        if total > limit:
            raise PayloadTooLarge(f"upload exceeds the limit of {limit} bytes")
        dest.write(chunk)
    return total
