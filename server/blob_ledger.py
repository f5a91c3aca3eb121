"""Blobs a transaction wrote, deleted again if it rolls back.

The blob store is not part of the database's transaction: a request or background step that
stores a model and then fails would leave the model's file behind with no row naming it.
``store_model`` notes each new blob here; ``db.end_session`` deletes the noted blobs when the
session rolls back (and forgets them when it commits), and ``background.guarded`` deletes those
noted inside a savepoint it rolls back. A blob is only noted when no row named its bytes, so
another transaction can only share it by storing the same bytes in the same instant.

Deletes go the other way: a delete that leaves no row naming a blob notes it with
``note_unused``, and ``db.end_session`` deletes it only after the commit (``committed``); a
rollback keeps it (``discard_unused``), so no row is ever left without its blob. A blob the store
fails to delete is logged and left: a file no row names costs space, not correctness. Only
request sessions delete (no background step, so no savepoint rolls a delete back).
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from latlab.server.blobstore import BlobStore

__all__ = ["committed", "discard_unused", "forget", "mark", "note", "note_unused", "roll_back"]

log = logging.getLogger(__name__)

_KEY = "latlab.new_blobs"
_UNUSED = "latlab.unused_blobs"


def note(session: Session, blobs: BlobStore, sha256: str) -> None:
    session.info.setdefault(_KEY, []).append((blobs, sha256))


def mark(session: Session) -> int:
    """A point to roll back to: the number of blobs noted so far."""
    return len(session.info.get(_KEY, ()))


def roll_back(session: Session, since: int = 0) -> None:
    """Delete the blobs noted after ``since``; one the store fails to delete is logged and left
    (an unnamed file costs space, not correctness; the error being handled matters more)."""
    noted: list[tuple[BlobStore, str]] = session.info.get(_KEY, [])
    for blobs, sha256 in reversed(noted[since:]):
        try:
            blobs.delete(sha256)
        except Exception:
            log.warning(
                "could not delete a rolled-back blob", exc_info=True, extra={"sha256": sha256}
            )
    del noted[since:]


def forget(session: Session) -> None:
    session.info.pop(_KEY, None)


def note_unused(session: Session, blobs: BlobStore, sha256: str) -> None:
    """No row names the blob any more once this session commits: delete it then."""
    session.info.setdefault(_UNUSED, []).append((blobs, sha256))


def committed(session: Session) -> None:
    """The session committed: its new blobs are named by rows (forgotten), its unused ones are
    deleted."""
    forget(session)
    unused: list[tuple[BlobStore, str]] = session.info.pop(_UNUSED, [])
    for blobs, sha256 in unused:
        try:
            blobs.delete(sha256)
        except Exception:
            log.warning(
                "could not delete an unused blob; it stays in the store",
                exc_info=True,
                extra={"sha256": sha256},
            )


def discard_unused(session: Session) -> None:
    """The session rolled back: the rows still name the blobs it would have deleted."""
    session.info.pop(_UNUSED, None)
