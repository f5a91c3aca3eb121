"""Wake-ups for long-polling claims when a job is queued in this process.

Claims also poll the database on a short interval, so a job queued by another server
process is found too (PostgreSQL LISTEN/NOTIFY can replace the poll later).
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["JobNotifier"]


class JobNotifier:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._event = asyncio.Event()

    def notify(self) -> None:
        """Safe from any thread (sync endpoints run in a thread pool)."""
        if self._loop is not None and self._event is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        assert self._event is not None
        self._event.set()
        self._event = asyncio.Event()  # waiters hold the old, set event

    async def wait(self, timeout_s: float) -> None:
        if self._event is None:
            await asyncio.sleep(timeout_s)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout_s)
