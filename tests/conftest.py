"""Fixtures: a real database (SQLite file, or a fresh PostgreSQL database), a live server
(uvicorn on 127.0.0.1, a free port), clients, a registered device, an uploaded model."""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from latlab.client import AgentClient, Client
from latlab.schemas import DeviceRegistered, ModelOut
from latlab.server.config import Settings
from latlab.server.embedded import EmbeddedServer
from tests.factories import API_KEY, cnn_bytes, make_settings, register
from tests.phone import Phone, install_phone

pytest_plugins = ["tests.s3"]

PG_ADMIN_URL = os.environ.get("LATLAB_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_available() -> str | None:
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return None
    except psycopg.OperationalError as exc:
        return f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}".splitlines()[0]


_PG_PROBLEM = _pg_available()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    if _PG_PROBLEM is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs PostgreSQL: {_PG_PROBLEM}")
        pytest.skip(_PG_PROBLEM)
    name = f"latlab_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"postgresql+psycopg://{base.split('://', 1)[1]}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Run the test on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'latlab.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'latlab.db'}"


@pytest.fixture
def settings(tmp_path: Path, sqlite_url: str) -> Settings:
    """SQLite by default; tests that must run on both databases use ``server_on_both``."""
    return make_settings(tmp_path, sqlite_url)


@pytest.fixture
def live_server(settings: Settings) -> Iterator[EmbeddedServer]:
    with EmbeddedServer(settings) as server:
        yield server


@pytest.fixture
def server_on_both(tmp_path: Path, db_url: str) -> Iterator[EmbeddedServer]:
    """A live server on SQLite, then on PostgreSQL."""
    with EmbeddedServer(make_settings(tmp_path, db_url)) as server:
        yield server


@pytest.fixture
def client(live_server: EmbeddedServer) -> Iterator[Client]:
    with Client(live_server.url, API_KEY) as c:
        yield c


@pytest.fixture
def device(live_server: EmbeddedServer) -> Iterator[tuple[AgentClient, DeviceRegistered]]:
    """A registered device: its agent client (holding its token) and its registration."""
    agent_client, registered = register(live_server.url)
    with agent_client:
        yield agent_client, registered


@pytest.fixture
def model(client: Client, tmp_path: Path) -> ModelOut:
    """An uploaded tiny CNN."""
    path = tmp_path / "tiny.onnx"
    path.write_bytes(cnn_bytes(seed=secrets.randbelow(10**6)))
    return client.upload_model(path)


@pytest.fixture
def phone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Phone:
    """A stand-in adb replaying one Android phone (tests/stand_in_adb.py)."""
    return install_phone(tmp_path, monkeypatch)
