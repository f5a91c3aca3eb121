"""Engine, sessions and migrations: the one place that knows which database is behind.

SQLite (the embedded default) gets WAL, a busy timeout and ``BEGIN IMMEDIATE`` for every
transaction, so concurrent writers queue instead of failing on a lock upgrade: that is how a
job claim is serialised there. The queue is first come, first served within the process (a
``FairLock`` before each ``BEGIN``): SQLite's own busy handler retries by polling, and a loop of
short transactions (a campaign's preparation) would starve a request waiting on it past the busy
timeout. PostgreSQL claims with ``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

import fcntl
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, Table, create_engine, event, func, select, text
from sqlalchemy.engine import CursorResult, Result, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from latlab import migrations
from latlab.server import blob_ledger
from latlab.server.errors import InvalidInput, NotFound
from latlab.untrusted import excerpt

__all__ = [
    "IN_CHUNK",
    "MIN_ID_PREFIX",
    "affected",
    "alembic_config",
    "by_id_or_prefix",
    "connection_problem",
    "create_db_engine",
    "current_revision",
    "end_session",
    "head_revision",
    "in_chunks",
    "is_sqlite",
    "release",
    "reserve_ids",
    "session_scope",
    "upgrade_to_head",
    "utcnow",
]

MIGRATIONS_DIR = Path(migrations.__file__).parent


def utcnow() -> datetime:
    return datetime.now(UTC)


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


#: Connections a server process holds open: one per thread-pool worker (anyio's default 40),
#: so a request never waits for a connection while a worker is free.
POOL_SIZE = 40
#: How long a request waits for a connection before the server answers 503 (busy).
POOL_TIMEOUT_S = 10.0
#: How long an SQLite transaction waits for the write lock (its turn, then SQLite's busy
#: timeout for another process) before the server answers 503 (busy).
SQLITE_LOCK_TIMEOUT_S = 30.0


def create_db_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": SQLITE_LOCK_TIMEOUT_S}
        )
        _sqlite_serialised_writes(engine)
        return engine
    engine = create_engine(url, pool_size=POOL_SIZE, max_overflow=0, pool_timeout=POOL_TIMEOUT_S)
    _ping_when_idle(engine)
    return engine


#: A pooled connection idle this long is pinged before it is used (one round trip to the
#: database); one given back moments ago is not. SQLAlchemy's ``pool_pre_ping`` pings on
#: every checkout, a round trip per request on a busy server.
PING_AFTER_IDLE_S = 2.0
_IDLE_SINCE = "latlab_idle_since"


def _ping_when_idle(engine: Engine) -> None:
    """A connection the database dropped while it sat in the pool (a restart, an idle
    timeout) is replaced before a request gets it, as ``pool_pre_ping`` would."""

    @event.listens_for(engine, "checkin")
    def _on_checkin(_: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _: Any) -> None:
        since = record.info.get(_IDLE_SINCE)
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_S:
            return  # new, or back in the pool moments ago
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:
            # the pool discards this connection and checks out a fresh one
            raise DisconnectionError(f"pooled connection is gone: {exc}") from exc


class FairLock:
    """A lock handed to its waiters in the order they came (``threading.Lock`` promises no
    order, and SQLite's busy handler polls)."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held = False
        self._waiters: deque[threading.Event] = deque()

    def acquire(self, timeout_s: float) -> bool:
        with self._mutex:
            if not self._held and not self._waiters:
                self._held = True
                return True
            turn = threading.Event()
            self._waiters.append(turn)
        if turn.wait(timeout_s):
            return True
        with self._mutex:
            if turn.is_set():  # handed over just as the wait gave up
                return True
            self._waiters.remove(turn)
            return False

    def release(self) -> None:
        with self._mutex:
            if self._waiters:
                self._waiters.popleft().set()  # straight to the next in line
            else:
                self._held = False


_HOLDS_GATE = "latlab_write_gate"


def _sqlite_serialised_writes(engine: Engine) -> None:
    gate = FairLock()

    def leave(info: dict[Any, Any]) -> None:
        if info.pop(_HOLDS_GATE, False):
            gate.release()

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")  # the busy timeout is the driver's ``timeout``
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if not gate.acquire(SQLITE_LOCK_TIMEOUT_S):
            raise SQLAlchemyTimeoutError("no turn at the SQLite write lock")
        conn.info[_HOLDS_GATE] = True
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            leave(conn.info)
            raise

    # "commit" fires just before the COMMIT itself: the next in line may wait that long more in
    # SQLite's busy handler, and the one leaving cannot get back in before it
    @event.listens_for(engine, "commit")
    def _on_commit(conn: Any) -> None:
        leave(conn.info)

    @event.listens_for(engine, "rollback")
    def _on_rollback(conn: Any) -> None:
        leave(conn.info)

    @event.listens_for(engine, "checkin")
    def _on_checkin(_: Any, record: Any) -> None:
        leave(record.info)  # a connection given back mid-transaction (never expected)


T = TypeVar("T")
R = TypeVar("R")

#: Ids per ``IN (...)`` query: a dataset or LUT reads the rows of 10^5 measurements.
IN_CHUNK = 500


def in_chunks(ids: Sequence[T]) -> Iterator[Sequence[T]]:
    """``ids`` in slices of at most ``IN_CHUNK``, one ``IN (...)`` query each."""
    for start in range(0, len(ids), IN_CHUNK):
        yield ids[start : start + IN_CHUNK]


#: An id shorter than itself is taken as its prefix (the CLI's tables print 12 characters)
#: from this length on; ids are lowercase hex (uuid4 hex, sha256).
MIN_ID_PREFIX = 6
_HEX = re.compile(r"[0-9a-f]+")


def by_id_or_prefix(
    session: Session,
    ref: str,
    get: Callable[[Session, str], R | None],
    column: InstrumentedAttribute[str],
    what: str,
) -> R:
    """The row whose id is ``ref``, else the one row whose id starts with it: an unknown id is
    a 404, a prefix several ids share a 422 that says to give more of it."""
    found = get(session, ref)
    if found is not None:
        return found
    matches: list[str] = []
    if len(ref) >= MIN_ID_PREFIX and _HEX.fullmatch(ref):
        matches = list(session.scalars(select(column).where(column.like(f"{ref}%")).limit(2)))
    if len(matches) > 1:
        raise InvalidInput(f"several {what}s have ids starting {ref!r}: give more of the id")
    found = get(session, matches[0]) if matches else None
    if found is None:
        raise NotFound(f"no {what} {excerpt(ref)}")
    return found


def affected(result: Result[Any]) -> int:
    """The rows an UPDATE or DELETE statement changed (its cursor's rowcount)."""
    return int(cast(CursorResult[Any], result).rowcount)


def reserve_ids(session: Session, table: Table, n: int) -> list[int]:
    """``n`` unused, increasing values of ``table.id`` for a bulk insert that must know its
    keys (the driver's RETURNING of many rows is slow, and row by row on SQLite).

    PostgreSQL draws them from the column's sequence. On SQLite every transaction began with
    ``BEGIN IMMEDIATE``, so this one holds the write lock and the maximum cannot move.
    """
    if n <= 0:
        return []
    if session.get_bind().dialect.name == "postgresql":
        ids = session.scalars(
            text(
                "SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)"
            ),
            {"table": table.name, "n": n},
        ).all()
        return sorted(ids)
    start = session.scalar(select(func.max(table.c.id))) or 0
    return list(range(start + 1, start + n + 1))


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
    except BaseException:
        end_session(session, commit=False)
        raise
    end_session(session, commit=True)


def release(session: Session) -> None:
    """End a session's reads before a long computation that writes nothing: its transaction is
    committed (nothing to write) and its connection given back — on SQLite, the one write gate
    every transaction holds. The session begins a new transaction if it is used again."""
    session.commit()


def end_session(session: Session, *, commit: bool) -> None:
    """Commit (rolled back if the commit fails) or roll back, then give the connection back.
    Blobs the session's deletes left unnamed are deleted after a commit, never before."""
    try:
        if commit:
            session.commit()
            blob_ledger.committed(session)  # the blobs its deletes left unnamed go now
        else:
            session.rollback()
    except BaseException:
        session.rollback()
        raise
    finally:
        blob_ledger.roll_back(session)  # what a rolled-back session stored (none after a commit)
        blob_ledger.discard_unused(session)  # and what it would have deleted (none after one)
        session.close()


def alembic_config(engine: Engine | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


#: The PostgreSQL advisory lock that serialises migrations ("latlab" in ASCII, as a bigint).
MIGRATION_LOCK_KEY = 0x6C61746C6162


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """Held while migrating, so replicas started at once on one database migrate one after
    another (the later ones find the schema at head): a PostgreSQL advisory lock, or an
    exclusive lock on a file beside the SQLite database."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
                conn.commit()
        return
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate-lock", "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def connection_problem(url: str, exc: BaseException) -> str:
    """One line saying which database could not be used and why, without the password (what
    ``latlab server`` prints instead of SQLAlchemy's text and web link)."""
    try:
        parsed = make_url(url)
        port = f":{parsed.port}" if parsed.port else ""
        where = f"{parsed.get_backend_name()} database {parsed.database or ''!s}"
        if parsed.host:
            where += f" at {parsed.host}{port}"
    except ArgumentError:
        return "LATLAB_DATABASE_URL is not a database URL (e.g. postgresql+psycopg://user@host/db)"
    if isinstance(exc, ImportError):
        cause = f"its driver is not installed (no module {exc.name or '?'})"
    else:
        cause = str(exc.orig if isinstance(exc, DBAPIError) else exc)
        cause = cause.split("(Background on this error", 1)[0]
        cause = " ".join(line.strip() for line in cause.splitlines() if line.strip())
        if parsed.password:
            cause = cause.replace(parsed.password, "***")
    return f"the {where} cannot be used: {cause[:300]}"


def upgrade_to_head(engine: Engine) -> None:
    with _migration_lock(engine):
        command.upgrade(alembic_config(engine), "head")


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
