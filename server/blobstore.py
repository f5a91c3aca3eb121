"""Content-addressed blob store: bytes in, sha256 out; deduplicated by construction.

One small interface (``BlobStore``) with two implementations: a local directory (the embedded
default) and an S3-compatible bucket (AWS S3, MinIO, ...) that several server replicas share.
Both pass the same contract tests (tests/test_blobstore.py); ``open_blob_store`` picks one from
the settings.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, cast

from latlab.server.errors import Unavailable

if TYPE_CHECKING:
    from latlab.server.config import Settings

__all__ = ["BlobStore", "LocalBlobStore", "S3BlobStore", "is_sha256", "open_blob_store"]

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

    def iter_chunks(self, sha256: str) -> Iterator[bytes]:
        """The blob in chunks; ``FileNotFoundError`` at the call (not at the first chunk) if
        absent, so a download fails before its status line is sent."""

    def delete(self, sha256: str) -> None: ...

    def check(self) -> None:
        """Raise ``Unavailable`` with the reason when the store cannot be used (/healthz)."""


def open_blob_store(settings: Settings) -> BlobStore:
    """The store the settings name: an S3 bucket when ``s3_bucket`` is set, else the local
    blob directory."""
    if settings.s3_bucket:
        return S3BlobStore.from_settings(settings)
    return LocalBlobStore(settings.resolved_blob_dir)


def _key_path(sha256: str) -> str:
    """``ab/cdef...``: the same two-level layout in a directory and in a bucket."""
    if not is_sha256(sha256):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
    return f"{sha256[:2]}/{sha256[2:]}"


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
        return self.root / _key_path(sha256)

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
        f = self.open(sha256)  # now, not at the first chunk: a missing blob fails here

        def chunks() -> Iterator[bytes]:
            with f:
                while chunk := f.read(CHUNK_BYTES):
                    yield chunk

        return chunks()

    def delete(self, sha256: str) -> None:
        self._path(sha256).unlink(missing_ok=True)

    def check(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise Unavailable(f"the blob directory {self.root} is not writable")


#: Objects up to this size are read into memory by ``open``; larger ones spill to a temp file.
SPOOL_BYTES = 16 << 20


class S3BlobStore:
    """Blobs as objects ``<prefix>ab/cdef...`` in one bucket of an S3-compatible store.

    A PUT is atomic (an object is there whole or not at all) and the key is the content's
    hash, so replicas that store the same bytes at once write the same object. Connection and
    credential failures are ``Unavailable`` (503) with the store's reason; a missing object is
    ``FileNotFoundError``, as from a directory.
    """

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self._client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    @classmethod
    def from_settings(cls, settings: Settings) -> S3BlobStore:
        """A boto3 client from ``LATLAB_S3_*`` (credentials from boto3's own chain when the
        settings hold none), with the bucket created if it does not exist yet."""
        try:
            import boto3
            from botocore.config import Config
        except ImportError as exc:
            raise RuntimeError(
                "LATLAB_S3_BUCKET is set but boto3 is not installed: pip install 'latlab[s3]'"
            ) from exc
        secret = settings.s3_secret_access_key
        client = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            region_name=settings.s3_region,
            aws_access_key_id=settings.s3_access_key_id,
            aws_secret_access_key=secret.get_secret_value() if secret else None,
            config=Config(
                # MinIO and most S3-compatible stores want path-style URLs
                s3={"addressing_style": settings.s3_addressing_style},
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=5,
                read_timeout=60,
            ),
        )
        store = cls(client, settings.s3_bucket or "", settings.s3_prefix)
        store.ensure_bucket()
        return store

    def _key(self, sha256: str) -> str:
        return self.prefix + _key_path(sha256)

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(**kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in {"404", "NoSuchKey", "NotFound"}:
                raise FileNotFoundError(f"s3://{self.bucket}/{kwargs.get('Key', '')}") from exc
            raise Unavailable(
                f"the blob store refused {what} in bucket {self.bucket!r}: {code or exc}"
            ) from exc
        except BotoCoreError as exc:
            raise Unavailable(f"the blob store does not answer ({what}): {exc}") from exc

    def ensure_bucket(self) -> None:
        try:
            self._call("HeadBucket", self._client.head_bucket, Bucket=self.bucket)
        except FileNotFoundError:
            self._call("CreateBucket", self._client.create_bucket, Bucket=self.bucket)

    def put_file(self, path: Path) -> str:
        try:
            sha256 = sha256_of_file(path)
            if not self.exists(sha256):
                with path.open("rb") as f:
                    self._call(
                        "PutObject",
                        self._client.upload_fileobj,
                        Fileobj=f,
                        Bucket=self.bucket,
                        Key=self._key(sha256),
                    )
            return sha256
        finally:
            path.unlink(missing_ok=True)

    def exists(self, sha256: str) -> bool:
        try:
            self._call(
                "HeadObject", self._client.head_object, Bucket=self.bucket, Key=self._key(sha256)
            )
        except FileNotFoundError:
            return False
        return True

    def _get(self, sha256: str) -> Any:
        return self._call(
            "GetObject", self._client.get_object, Bucket=self.bucket, Key=self._key(sha256)
        )["Body"]

    def open(self, sha256: str) -> BinaryIO:
        body = self._get(sha256)
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 (returned open)
        with body:
            for chunk in body.iter_chunks(CHUNK_BYTES):
                spool.write(chunk)
        spool.seek(0)
        return cast(BinaryIO, spool)

    def iter_chunks(self, sha256: str) -> Iterator[bytes]:
        body = self._get(sha256)  # now, not at the first chunk: a missing blob fails here

        def chunks() -> Iterator[bytes]:
            with body:
                yield from body.iter_chunks(CHUNK_BYTES)

        return chunks()

    def delete(self, sha256: str) -> None:
        self._call(
            "DeleteObject", self._client.delete_object, Bucket=self.bucket, Key=self._key(sha256)
        )

    def check(self) -> None:
        try:
            self._call("HeadBucket", self._client.head_bucket, Bucket=self.bucket)
        except FileNotFoundError as exc:
            raise Unavailable(f"the bucket {self.bucket!r} does not exist") from exc
