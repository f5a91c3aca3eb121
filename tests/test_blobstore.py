"""The blob store contract; every implementation runs the same tests: a local directory and an
S3 bucket on a real S3-compatible server over HTTP (tests/s3.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latlab.client import Client
from latlab.errors import ApiError
from latlab.server.blobstore import BlobStore, LocalBlobStore, S3BlobStore, open_blob_store
from latlab.server.config import Settings
from latlab.server.embedded import EmbeddedServer
from latlab.server.errors import Unavailable
from tests.factories import API_KEY, cnn_bytes, make_settings
from tests.s3 import (
    bucket_keys,
    new_bucket_name,
    s3_client,
    s3_only_settings,
    s3_settings,
)


def make_store(kind: str, root: Path, request: pytest.FixtureRequest) -> BlobStore:
    if kind == "local":
        return LocalBlobStore(root / "blobs")
    endpoint: str = request.getfixturevalue("s3_endpoint")
    return S3BlobStore.from_settings(s3_only_settings(root, endpoint, new_bucket_name()))


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    return make_store(request.param, tmp_path, request)


def put(store: BlobStore, tmp_path: Path, data: bytes, name: str = "in") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return store.put_file(path)


def test_a_blob_is_stored_under_its_sha256(store: BlobStore, tmp_path: Path) -> None:
    sha = put(store, tmp_path, b"model bytes")
    assert sha == hashlib.sha256(b"model bytes").hexdigest()
    assert store.exists(sha)
    with store.open(sha) as f:
        assert f.read() == b"model bytes"
    assert b"".join(store.iter_chunks(sha)) == b"model bytes"


def test_the_same_bytes_are_stored_once(store: BlobStore, tmp_path: Path) -> None:
    a = put(store, tmp_path, b"x" * 100, "a")
    b = put(store, tmp_path, b"x" * 100, "b")
    assert a == b
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_deleted_blob_is_gone(store: BlobStore, tmp_path: Path) -> None:
    sha = put(store, tmp_path, b"gone")
    store.delete(sha)
    assert not store.exists(sha)
    with pytest.raises(FileNotFoundError):
        store.open(sha)
    with pytest.raises(FileNotFoundError):
        store.iter_chunks(sha)  # at the call, not at the first chunk (before any HTTP header)


@pytest.mark.parametrize("name", ["../../etc/passwd", "ABC", "0" * 63, ""])
def test_a_name_that_is_not_a_sha256_is_refused(store: BlobStore, name: str) -> None:
    with pytest.raises(ValueError):
        store.exists(name)


def test_a_usable_store_passes_its_check(store: BlobStore) -> None:
    store.check()


@pytest.mark.parametrize("kind", ["local", "s3"])
@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=3 * (1 << 20) // 2))
def test_any_bytes_round_trip(
    kind: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    root = tmp_path_factory.mktemp("rt")
    store = make_store(kind, root, request)
    path = root / "in"
    path.write_bytes(data)
    sha = store.put_file(path)
    assert b"".join(store.iter_chunks(sha)) == data
    with store.open(sha) as f:
        assert f.read() == data


# --- S3 specifics ------------------------------------------------------------------------


def test_the_settings_choose_the_store(tmp_path: Path, s3_endpoint: str) -> None:
    assert isinstance(open_blob_store(Settings(data_dir=tmp_path)), LocalBlobStore)
    # compose writes an unset ${LATLAB_S3_BUCKET:-} as an empty value: still the local store
    assert isinstance(open_blob_store(Settings(data_dir=tmp_path, s3_bucket="")), LocalBlobStore)
    s3 = open_blob_store(s3_only_settings(tmp_path, s3_endpoint, new_bucket_name()))
    assert isinstance(s3, S3BlobStore)


def test_a_missing_bucket_is_created_and_objects_land_under_the_prefix(
    tmp_path: Path, s3_endpoint: str
) -> None:
    bucket = new_bucket_name()
    store = S3BlobStore.from_settings(s3_only_settings(tmp_path, s3_endpoint, bucket))
    sha = put(store, tmp_path, b"where is it")
    assert bucket_keys(s3_endpoint, bucket) == [f"blobs/{sha[:2]}/{sha[2:]}"]


def test_a_blob_over_the_multipart_threshold_round_trips(tmp_path: Path, s3_endpoint: str) -> None:
    """boto3 uploads files over 8 MiB in parts; the object must come back whole."""
    store = S3BlobStore(s3_client(s3_endpoint), new_bucket_name())
    store.ensure_bucket()
    data = hashlib.sha256(b"seed").digest() * (20 * (1 << 20) // 32)  # 20 MiB
    sha = put(store, tmp_path, data)
    assert sha == hashlib.sha256(data).hexdigest()
    with store.open(sha) as f:
        assert f.read() == data


def test_an_unreachable_store_is_unavailable_not_a_crash(tmp_path: Path) -> None:
    from latlab.server.embedded import free_port

    client = s3_client(
        f"http://127.0.0.1:{free_port()}", retries={"max_attempts": 1}, connect_timeout=1
    )
    store = S3BlobStore(client, "nobody-home")
    with pytest.raises(Unavailable, match="does not answer"):
        store.check()
    with pytest.raises(Unavailable):
        put(store, tmp_path, b"x")
    assert not (tmp_path / "in").exists(), "the scratch file is removed whatever happened"


def test_a_deleted_bucket_fails_the_check(tmp_path: Path, s3_endpoint: str) -> None:
    bucket = new_bucket_name()
    client = s3_client(s3_endpoint)
    store = S3BlobStore(client, bucket)
    store.ensure_bucket()
    store.check()
    client.delete_bucket(Bucket=bucket)
    with pytest.raises(Unavailable, match="does not exist"):
        store.check()


def test_an_upload_while_the_bucket_is_gone_is_a_503_and_stores_nothing(
    tmp_path: Path, sqlite_url: str, s3_endpoint: str
) -> None:
    bucket = new_bucket_name()
    settings = make_settings(tmp_path, sqlite_url, **s3_settings(s3_endpoint, bucket))
    data = cnn_bytes(seed=11)
    with EmbeddedServer(settings) as server, Client(server.url, API_KEY) as client:
        s3_client(s3_endpoint).delete_bucket(Bucket=bucket)
        with pytest.raises(ApiError) as refused:
            client.upload_model("m.onnx", data=data)
        assert refused.value.status == 503 and bucket in refused.value.message
        assert client.models() == []
        assert list((tmp_path / "data" / "uploads").iterdir()) == [], "no scratch file left"
        s3_client(s3_endpoint).create_bucket(Bucket=bucket)  # the store is back
        model = client.upload_model("m.onnx", data=data)
        assert [m.id for m in client.models()] == [model.id]
