"""Wake-ups for long-polling claims when a job is queued in this process.

A job queued wakes one waiting claim, not all of them: with a hundred idle agents, waking
every claim for every job made a hundred claim transactions compete for each job (measured
with bench/load.py). A requeue of many jobs (the reaper, a revocation) wakes them all. Claims
also poll the database every ``CLAIM_POLL_S``, so a job queued by another server process, or
one the woken claim could not take (pinned elsewhere, a selector it does not match), is found
too (PostgreSQL LISTEN/NOTIFY could replace the poll).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

__all__ = ["JobNotifier"]


class JobNotifier:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: deque[asyncio.Future[None]] = deque()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiters = deque()

    def notify(self, n: int | None = 1) -> None:
        """Wake ``n`` waiting claims (None: all). Safe from any thread (sync endpoints run in
        a thread pool)."""
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
