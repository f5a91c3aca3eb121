"""Wake-ups for long-polling claims when a job is queued.

A job queued wakes one waiting claim, not all of them: with a hundred idle agents, waking
every claim for every job made a hundred claim transactions compete for each job (measured
with bench/load.py). A requeue of many jobs (the reaper, a revocation) wakes them all.

Server replicas on one PostgreSQL database tell each other through ``PgJobRelay`` (NOTIFY on
one channel, LISTEN in a thread of each process), so a claim waiting on one replica wakes when
a job is queued through another. Claims also poll the database every ``claim_poll_s``: a wake-up
lost with a dropped connection, or one that went to a claim that could not take the job (pinned
elsewhere, a selector it does not match), is found then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import uuid
from collections import deque
from collections.abc import Callable

import psycopg
from sqlalchemy import Engine

__all__ = ["JobNotifier", "PgJobRelay"]

log = logging.getLogger(__name__)


class JobNotifier:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: deque[asyncio.Future[None]] = deque()
        #: Passes each wake-up on to the other server processes (``PgJobRelay.publish``).
        self.relay: Callable[[int | None], None] | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiters = deque()

    def notify(self, n: int | None = 1) -> None:
        """Wake ``n`` waiting claims (None: all) here and in the other server processes. Safe
        from any thread (sync endpoints run in a thread pool); never blocks."""
        self.wake_here(n)
        if self.relay is not None:
            self.relay(n)

    @property
    def waiting(self) -> int:
        """Claims of this process waiting for a job now (read from any thread)."""
        return len(self._waiters)

    def wake_here(self, n: int | None) -> None:
        """Wake ``n`` waiting claims of this process only."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake, n)

    def notify_all(self) -> None:
        self.notify(None)

    def _wake(self, n: int | None) -> None:
        woken = 0
        while self._waiters and (n is None or woken < n):
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                woken += 1

    async def wait(self, timeout_s: float) -> None:
        if self._loop is None:
            await asyncio.sleep(timeout_s)
            return
        waiter = self._loop.create_future()
        self._waiters.append(waiter)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, timeout_s)
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)


class _Stop:
    pass


class PgJobRelay:
    """Wake-ups between server processes on one PostgreSQL database: each ``notify`` of this
    process is sent as ``NOTIFY latlab_jobs`` (from a sender thread, so no caller waits on the
    database), and a listener thread wakes this process's claims for the other processes'.

    Payloads are ``"<origin> <n|all>"``; a process ignores its own (it woke its claims already).
    A lost connection is reopened after a second; what was lost meanwhile the claims' poll finds.
    """

    CHANNEL = "latlab_jobs"

    def __init__(self, conninfo: str, notifier: JobNotifier) -> None:
        self._conninfo = conninfo
        self._notifier = notifier
        self._origin = uuid.uuid4().hex
        self._outbox: queue.SimpleQueue[int | _Stop | None] = queue.SimpleQueue()
        self._stopping = threading.Event()
        #: Set while the listener is subscribed (tests wait for it).
        self.listening = threading.Event()
        self._threads = [
            threading.Thread(target=self._listen, name="latlab-listen", daemon=True),
            threading.Thread(target=self._send, name="latlab-notify", daemon=True),
        ]

    @classmethod
    def for_engine(cls, engine: Engine, notifier: JobNotifier) -> PgJobRelay:
        url = engine.url.set(drivername="postgresql")
        return cls(url.render_as_string(hide_password=False), notifier)

    def start(self, subscribed_within_s: float = 5.0) -> None:
        """Start relaying; waits until the listener is subscribed (or the time is up: it keeps
        trying in the background), so a started server hears the others' jobs."""
        self._notifier.relay = self.publish
        for thread in self._threads:
            thread.start()
        if not self.listening.wait(subscribed_within_s):
            log.warning("not yet listening for other servers' jobs; claims poll meanwhile")

    def stop(self) -> None:
        self._notifier.relay = None
        self._stopping.set()
        self._outbox.put(_Stop())
        for thread in self._threads:
            thread.join(timeout=10)

    def publish(self, n: int | None) -> None:
        self._outbox.put(n)

    def _send(self) -> None:
        conn: psycopg.Connection | None = None
        while not isinstance(item := self._outbox.get(), _Stop):
            payload = f"{self._origin} {'all' if item is None else item}"
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5)
                conn.execute("SELECT pg_notify(%s, %s)", (self.CHANNEL, payload))
            except psycopg.Error as exc:
                log.warning("could not tell the other servers of a job: %s", exc)
                conn = None
        if conn is not None:
            conn.close()

    def _listen(self) -> None:
        while not self._stopping.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {self.CHANNEL}")
                    self.listening.set()
                    while not self._stopping.is_set():
                        for note in conn.notifies(timeout=1.0):
                            self._received(note.payload)
            except psycopg.Error as exc:
                log.warning("not listening for other servers' jobs (retrying): %s", exc)
            self.listening.clear()
            self._stopping.wait(1.0)

    def _received(self, payload: str) -> None:
        origin, _, n = payload.partition(" ")
        if origin != self._origin:
            self._notifier.wake_here(None if n == "all" else int(n))
