"""An S3-compatible server for the tests: moto's S3 over real HTTP on 127.0.0.1, a free port.

No MinIO binary installs from the package registries this project may use, so the S3 blob
store is tested against moto's server, which speaks the S3 REST API (signed requests, path-style
buckets, multipart uploads) through the same boto3 client the server uses in production.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from latlab.server.config import Settings
from latlab.server.embedded import free_port

#: Credentials the stand-in accepts (it checks none); the store passes them as production does.
ACCESS_KEY, SECRET_KEY, REGION = "latlab-test", "latlab-test-secret", "us-east-1"


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def new_bucket_name() -> str:
    return f"latlab-{secrets.token_hex(6)}"


def s3_client(endpoint: str, **config: Any) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(s3={"addressing_style": "path"}, **config),
    )


def s3_settings(endpoint: str, bucket: str) -> dict[str, object]:
    """The ``LATLAB_S3_*`` settings of a server whose blobs live in ``bucket``."""
    return {
        "s3_bucket": bucket,
        "s3_prefix": "blobs/",
        "s3_endpoint_url": endpoint,
        "s3_region": REGION,
        "s3_access_key_id": ACCESS_KEY,
        "s3_secret_access_key": SECRET_KEY,
    }


def s3_only_settings(data_dir: Path, endpoint: str, bucket: str) -> Settings:
    """Bare server settings (no keys, SQLite default) whose blobs live in ``bucket``."""
    return Settings(data_dir=data_dir, **s3_settings(endpoint, bucket))  # type: ignore[arg-type]


def bucket_keys(endpoint: str, bucket: str) -> list[str]:
    """The object keys in ``bucket``, sorted."""
    listed = s3_client(endpoint).list_objects_v2(Bucket=bucket).get("Contents", [])
    return sorted(o["Key"] for o in listed)
