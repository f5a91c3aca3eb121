"""Content-addressed blob store: bytes in, sha256 out; deduplicated by construction.

One small interface (``BlobStore``) so an S3-compatible store can slot in beside the local
directory; every implementation passes the same contract tests (tests/test_blobstore.py).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

__all__ = ["BlobStore", "LocalBlobStore", "is_sha256"]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
CHUNK_BYTES = 1 << 20


def is_sha256(value: str) -> bool:
    return bool(_SHA256.match(value))


class BlobStore(Protocol):
    def put_file(self, path: Path) -> str:
        """Store the file's bytes (the file is consumed: moved or copied); return its sha256."""

    def exists(self, sha256: str) -> bool: ...

    def open(self, sha256: str) -> BinaryIO:
        """Open a stored blob for reading; ``FileNotFoundError`` if absent."""

    def iter_chunks(self, sha256: str) -> Iterator[bytes]: ...

    def delete(self, sha256: str) -> None: ...


def sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


class LocalBlobStore:
    """Blobs as files ``<root>/ab/cdef...`` written atomically (temp file + rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, sha256: str) -> Path:
        if not is_sha256(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:]

    def put_file(self, path: Path) -> str:
        sha256 = sha256_of_file(path)
        dest = self._path(sha256)
        if dest.exists():
            path.unlink(missing_ok=True)
            return sha256
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".incoming-")
        os.close(fd)
        try:
            if path.stat().st_dev == dest.parent.stat().st_dev:
                os.replace(path, tmp)
            else:
                shutil.copyfile(path, tmp)
            os.replace(tmp, dest)
        finally:
            Path(tmp).unlink(missing_ok=True)
            path.unlink(missing_ok=True)
        return sha256

    def exists(self, sha256: str) -> bool:
        return self._path(sha256).is_file()

    def open(self, sha256: str) -> BinaryIO:
        return self._path(sha256).open("rb")

    def iter_chunks(self, sha256: str) -> Iterator[bytes]:
        with self.open(sha256) as f:
            while chunk := f.read(CHUNK_BYTES):
                yield chunk

    def delete(self, sha256: str) -> None:
        self._path(sha256).unlink(missing_ok=True)
