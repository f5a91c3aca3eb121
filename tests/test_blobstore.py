"""The blob store contract; every implementation runs the same tests."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.blobstore import BlobStore, LocalBlobStore

STORES: dict[str, Callable[[Path], BlobStore]] = {
    "local": lambda root: LocalBlobStore(root / "blobs")
}


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    return STORES[request.param](tmp_path)


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


@pytest.mark.parametrize("name", ["../../etc/passwd", "ABC", "0" * 63, ""])
def test_a_name_that_is_not_a_sha256_is_refused(store: BlobStore, name: str) -> None:
    with pytest.raises(ValueError):
        store.exists(name)


@settings(max_examples=30, deadline=None)
@given(data=st.binary(max_size=3 * (1 << 20) // 2))
def test_any_bytes_round_trip(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    root = tmp_path_factory.mktemp("rt")
    store = LocalBlobStore(root / "blobs")
    path = root / "in"
    path.write_bytes(data)
    sha = store.put_file(path)
    assert b"".join(store.iter_chunks(sha)) == data
