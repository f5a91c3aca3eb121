"""The background task that prepares campaigns (export, upload, queue), one arch at a time."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from starlette.concurrency import run_in_threadpool

from server.datasets.service import prepare_next
from server.db import session_scope

__all__ = ["DatasetPreparer"]

log = logging.getLogger(__name__)

IDLE_POLL_S = 1.0


class DatasetPreparer:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    def wake(self) -> None:
        """Safe from any thread: a campaign was created."""
        if self._loop is not None and self._wake is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    async def run(self, stopping: asyncio.Event, state: object) -> None:
        from server.deps import AppState

        assert isinstance(state, AppState)
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        work_dir = state.settings.resolved_blob_dir / ".uploads"

        def step() -> bool:
            with session_scope(state.sessions) as session:
                return prepare_next(session, state.blobs, work_dir, state.settings.max_attempts)

        while not stopping.is_set():
            try:
                while not stopping.is_set() and await run_in_threadpool(step):
                    state.notifier.notify()
            except Exception:
                log.exception("preparing a dataset failed; retrying")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), IDLE_POLL_S)
