"""Fixtures: a real database (a SQLite file, or a fresh PostgreSQL database; both copied from
one migrated per session, or empty for the migration tests), a live server
(uvicorn on 127.0.0.1, a free port), clients, a registered device, an uploaded model."""

from __future__ import annotations

import os
import secrets
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from latlab.client import AgentClient, Client
from latlab.schemas import DeviceRegistered, ModelOut
from latlab.server.config import Settings
from latlab.server.db import create_db_engine, upgrade_to_head
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


def _require_pg() -> None:
    if _PG_PROBLEM is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs PostgreSQL: {_PG_PROBLEM}")
        pytest.skip(_PG_PROBLEM)


def _pg_url(name: str) -> str:
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return f"postgresql+psycopg://{base.split('://', 1)[1]}/{name}"


@contextmanager
def _pg_database(template: str | None = None) -> Iterator[str]:
    """A new PostgreSQL database (a copy of ``template`` when given), dropped afterwards."""
    name = f"latlab_t_{uuid.uuid4().hex[:12]}"
    copy_of = f' TEMPLATE "{template}"' if template else ""
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"{copy_of}')
    try:
        yield name
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _migrate(url: str) -> None:
    engine = create_db_engine(url)
    try:
        upgrade_to_head(engine)
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def _pg_template() -> Iterator[str]:
    """One PostgreSQL database migrated to head per session; each test gets a copy of it."""
    with _pg_database() as name:
        _migrate(_pg_url(name))
        yield name


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file migrated to head per session; each test gets a copy of it."""
    path = tmp_path_factory.mktemp("template") / "latlab.db"
    _migrate(f"sqlite:///{path}")
    return path


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh PostgreSQL database at head for one test (a copy of the session's migrated
    template, so the server's own migration on start finds nothing to do), dropped afterwards."""
    _require_pg()
    template: str = request.getfixturevalue("_pg_template")
    with _pg_database(template) as name:
        yield _pg_url(name)


@pytest.fixture
def sqlite_url(tmp_path: Path, _sqlite_template: Path) -> str:
    """A SQLite file at head for one test (a copy of the session's migrated template)."""
    path = tmp_path / "latlab.db"
    shutil.copyfile(_sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """Run the test on SQLite and on PostgreSQL, each database at head."""
    url: str = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database (no tables), on SQLite and on PostgreSQL: for the migration tests."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    _require_pg()
    with _pg_database() as name:
        yield _pg_url(name)


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
