"""The server's background work: steps that advance stored state one transaction at a time
(prepare a dataset campaign's next arch, prepare or assemble a LUT). All state is in the
database, so a restarted server picks up where the last one stopped; with several replicas the
steps take their rows with SKIP LOCKED.

A step's work on one item (an arch, a LUT) runs ``guarded``: whatever fails, the item's partial
writes are rolled back and the item is failed with the reason, at once for a ``LatlabError``
or a ``ServerError`` (what the item's input causes: it would fail the same way again) and on its third unexpected error
otherwise, so no item is retried without a bound and none stalls the items behind it. Only the
database's own connection errors reach the loop, which then backs off (nothing can be recorded
while the database is away)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from latlab.errors import LatlabError
from latlab.server import blob_ledger
from latlab.server.blobstore import BlobStore
from latlab.server.config import Settings
from latlab.server.db import session_scope
from latlab.server.errors import ServerError

if TYPE_CHECKING:
    from latlab.server.deps import AppState

__all__ = ["MAX_FAILURES", "BackgroundWork", "Step", "guarded"]

log = logging.getLogger(__name__)

#: One unit of work in its own transaction; True when it did something (try again at once).
Step = Callable[[Session, BlobStore, Settings], bool]
IDLE_POLL_S = 1.0
#: After a step raises (the database is away), the loop waits this long, doubling up to the cap.
BACKOFF_S = (1.0, 60.0)
#: An item whose work raises an unexpected error this many times is failed with it.
MAX_FAILURES = 3


class Item(Protocol):
    """A row a background step works on: it counts the unexpected errors of that work."""

    failures: int


def guarded(
    session: Session,
    item: Item,
    work: Callable[[], None],
    fail: Callable[[str], None],
    deterministic: tuple[type[Exception], ...] = (LatlabError, ServerError),
) -> None:
    """Run ``work`` for ``item`` in a savepoint; if it raises, roll its writes back and fail the
    item (``fail`` records the reason) at once for a ``deterministic`` error, else on its
    ``MAX_FAILURES``-th error, counting the errors before it. The database's connection errors
    propagate."""
    since = blob_ledger.mark(session)
    try:
        with session.begin_nested():
            work()
    except (OperationalError, InterfaceError):
        raise  # the session rolls back, and its blobs with it
    except deterministic as exc:
        blob_ledger.roll_back(session, since)
        fail(str(exc))
    except Exception as exc:
        blob_ledger.roll_back(session, since)
        item.failures += 1
        reason = f"{type(exc).__name__}: {exc}"
        log.warning("background work failed", exc_info=True, extra={"failures": item.failures})
        if item.failures >= MAX_FAILURES:
            fail(f"{reason} (after {item.failures} attempts)")


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

        backoff_s = 0.0
        while not stopping.is_set():
            self._wake.clear()
            failed = False
            for step in self._steps:
                try:
                    while not stopping.is_set() and await run_in_threadpool(one, step):
                        state.notifier.notify()  # new jobs may be queued
                except Exception:
                    failed = True
                    log.exception(
                        "background step failed; retrying", extra={"step": step.__qualname__}
                    )
            low, cap = BACKOFF_S
            backoff_s = min(cap, max(low, 2 * backoff_s)) if failed else 0.0
            if backoff_s:  # a wake-up does not cut it short; a stop does
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), backoff_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), IDLE_POLL_S)
