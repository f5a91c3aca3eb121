"""The server's background work: steps that advance stored state one transaction at a time
(prepare a dataset campaign's next arch, prepare or assemble a LUT). All state is in the
database, so a restarted server picks up where the last one stopped; with several replicas the
steps take their rows with SKIP LOCKED."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from latlab.server.blobstore import BlobStore
from latlab.server.config import Settings
from latlab.server.db import session_scope

if TYPE_CHECKING:
    from latlab.server.deps import AppState

__all__ = ["BackgroundWork", "Step"]

log = logging.getLogger(__name__)

#: One unit of work in its own transaction; True when it did something (try again at once).
Step = Callable[[Session, BlobStore, Settings], bool]
IDLE_POLL_S = 1.0


class BackgroundWork:
    def __init__(self, steps: Sequence[Step]) -> None:
        self._steps = tuple(steps)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    def wake(self) -> None:
        """Safe from any thread: there is new work (a campaign or a LUT was created)."""
        if self._loop is not None and self._wake is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    async def run(self, stopping: asyncio.Event, state: AppState) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()

        def one(step: Step) -> bool:
            with session_scope(state.sessions) as session:
                return step(session, state.blobs, state.settings)

        while not stopping.is_set():
            self._wake.clear()
            for step in self._steps:
                try:
                    while not stopping.is_set() and await run_in_threadpool(one, step):
                        state.notifier.notify()  # new jobs may be queued
                except Exception:
                    log.exception(
                        "background step failed; retrying", extra={"step": step.__qualname__}
                    )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), IDLE_POLL_S)
