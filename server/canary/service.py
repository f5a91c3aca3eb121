"""The device canary: a fixed reference model timed between a device's other jobs.

A lab's numbers are only comparable if the device stayed the same speed while it measured
them; a VM's, a laptop's or a phone's does not (other tenants, frequency scaling, heat). So
before a device is leased a job, the claim asks whether its canary is due for that job's
runtime identity: never timed with it, ``canary_every_jobs`` jobs since the last one, or
``canary_every_s`` seconds. If so, the device is leased a canary job first: the reference
model (an NB201 cell with every op type, exported once per format) with the job's own config,
per-op profile off. The job it would have had stays first in the queue.

The series (``GET /v1/devices/{id}/canary``) shows a device's speed over time; a campaign
checks each of its measurements against the canaries just before and after it
(server/datasets/canary_check.py) and measures a drifted window again.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from latlab.errors import LatlabError
from latlab.export.files import model_file
from latlab.quality import CanaryWindows, canary_windows
from latlab.runtimes import RuntimeConfig, runtime_spec, stored_config
from latlab.schemas import CanaryPoint, JobCreate, JobPurpose, ModelFormat
from latlab.server.blobstore import BlobStore
from latlab.server.canary import repository
from latlab.server.config import Settings
from latlab.server.jobs.repository import JobRow
from latlab.server.jobs.service import FirstHook, create_job
from latlab.server.models import repository as models
from latlab.server.models.service import ModelLimits, store_model
from latlab.server.uploads import scratch_file
from latlab.spaces import GraphForm, get_space

__all__ = [
    "CANARY_ARCH",
    "CanaryModels",
    "CanaryPolicy",
    "canary_config",
    "claim_hook",
    "closing_canary",
    "queue_canary",
    "windows",
]

log = logging.getLogger(__name__)

#: The reference model: an NB201 cell with every op type (CIFAR-10 network, pruned form).
CANARY_ARCH = "|nor_conv_3x3~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|skip_connect~0|avg_pool_3x3~1|nor_conv_3x3~2|"
CANARY_SEED = 0


@dataclass(frozen=True)
class CanaryPolicy:
    every_jobs: int
    every_s: float

    @classmethod
    def of(cls, settings: Settings) -> CanaryPolicy:
        return cls(settings.canary_every_jobs, settings.canary_every_s)

    @property
    def enabled(self) -> bool:
        return self.every_jobs > 0 or self.every_s > 0


class CanaryModels:
    """The reference model's id per format: exported and stored on first use (the same bytes
    every time: fixed weights, so the id is known after one export per process)."""

    #: Model id (sha256) per format, shared by every instance: the bytes never change.
    _ids: ClassVar[dict[ModelFormat, str]] = {}

    def __init__(self, blobs: BlobStore, settings: Settings) -> None:
        self.blobs = blobs
        self.settings = settings

    @classmethod
    def known_ids(cls) -> frozenset[str]:
        """The reference model's ids this process has exported (a delete refuses them)."""
        return frozenset(cls._ids.values())

    def model_id(self, session: Session, fmt: ModelFormat) -> str:
        known = self._ids.get(fmt)
        if known is not None and models.get(session, known) is not None:
            return known
        space = get_space("nb201")
        graph = space.graph(space.parse(CANARY_ARCH), GraphForm.pruned)
        data = model_file(graph, fmt, seed=CANARY_SEED)
        sha256 = hashlib.sha256(data).hexdigest()
        if models.get(session, sha256) is None:
            self._store(session, fmt, data)
        type(self)._ids[fmt] = sha256
        return sha256

    def _store(self, session: Session, fmt: ModelFormat, data: bytes) -> None:
        """Store it in a savepoint: claims on other connections may store the same bytes at
        the same instant (every agent's first claim). The row is inserted before the blob is
        written, so the one that loses the insert wrote nothing and takes the winner's."""
        try:
            with session.begin_nested(), scratch_file(self.settings, f".{fmt.value}") as path:
                path.write_bytes(data)
                store_model(
                    session,
                    self.blobs,
                    path,
                    f"canary-nb201.{fmt.value}",
                    ModelLimits.of(self.settings),
                )
        except IntegrityError:
            log.info("canary model stored by another transaction", extra={"format": fmt.value})


def windows(points: Sequence[CanaryPoint], at: Sequence[datetime]) -> CanaryWindows:
    """``latlab.quality.canary_windows`` of measurements taken at ``at`` against ``points``."""
    return canary_windows(
        [(p.measured_at.timestamp(), p.median_ms) for p in points], [t.timestamp() for t in at]
    )


def canary_config(config: RuntimeConfig) -> RuntimeConfig:
    """A job's config for its canary: the same runtime identity and protocol, no per-op pass."""
    return config.model_copy(update={"profile_ops": False})


def _due(
    session: Session, device_id: str, identity: str, policy: CanaryPolicy, now: datetime
) -> bool:
    last = repository.last_canary_job(session, device_id, identity)
    if last is None:
        return True
    if last.finished_at is None:  # one is queued or leased: lease it (again) first
        return True
    if policy.every_s and (now - last.finished_at).total_seconds() >= policy.every_s:
        return True
    if policy.every_jobs:
        since = repository.measured_since(
            session, device_id, identity, last.finished_at, policy.every_jobs
        )
        return since >= policy.every_jobs
    return False


def queue_canary(
    session: Session,
    canaries: CanaryModels,
    device_id: str,
    config: RuntimeConfig,
    max_attempts: int,
) -> str | None:
    """Queue (or find pending) the device's canary job for ``config``; its id, or None when
    the reference model cannot be written in the runtime's format here."""
    fmt = runtime_spec(config.runtime).model_format
    try:
        model_id = canaries.model_id(session, fmt)
    except LatlabError as exc:  # e.g. TFLite export without its extra on the server
        log.warning("no canary model for %s: %s", fmt.value, exc)
        return None
    job = create_job(
        session,
        JobCreate(model_id=model_id, device_id=device_id, config=canary_config(config)),
        max_attempts,
        JobPurpose.canary,
    )
    return job.id


def claim_hook(canaries: CanaryModels, policy: CanaryPolicy, max_attempts: int) -> FirstHook:
    """The claim's ``first`` hook: the device's canary job when it is due, else None."""

    def first(session: Session, device_id: str, row: JobRow, now: datetime) -> str | None:
        if not policy.enabled or not _due(session, device_id, row.runtime_identity, policy, now):
            return None
        return queue_canary(session, canaries, device_id, stored_config(row.config), max_attempts)

    return first


def closing_canary(
    session: Session,
    canaries: CanaryModels,
    device_id: str,
    config: RuntimeConfig,
    after: datetime,
    max_attempts: int,
) -> bool:
    """Queue the canary that closes a window ending at ``after``, unless one was queued since
    (pending, done or failed); True when one was queued now."""
    identity = config.identity_key()
    last = repository.last_canary_job(session, device_id, identity)
    if last is not None and (last.created_at > after or last.finished_at is None):
        return False  # one is coming (or came and failed)
    return queue_canary(session, canaries, device_id, config, max_attempts) is not None
