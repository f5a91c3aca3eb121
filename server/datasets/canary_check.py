"""The campaign's canary check: the background step that ends a campaign.

When every job of a measuring campaign has finished, each device's measurements are checked
against its canaries (server/canary.py). First the window after the last measurement is closed:
a canary is queued on the device, and the check waits for it up to ``canary_close_wait_s``
(then checks without it: the device may be gone). A measurement whose window drifted past the
campaign's ``canary_limit_pct`` (``latlab.quality.canary_windows``) is measured again, up to
``remeasure_drifted`` times, if the device is back at its reference speed (the closing canary
within the limit: a lasting shift would drift the re-measures too); the campaign goes back to
waiting for those jobs and is checked again. What stays drifted is kept and marked in the
exports (with ``adjusted_ms``, the median at the reference speed). Then it is ``done``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from latlab.runtimes import RuntimeConfig, stored_config
from latlab.schemas import CanaryPoint, DatasetCreate, DatasetState, JobCreate
from latlab.server.blobstore import BlobStore
from latlab.server.canary import repository as canaries
from latlab.server.canary import service as canary
from latlab.server.config import Settings
from latlab.server.datasets import active, repository
from latlab.server.db import utcnow
from latlab.server.jobs.service import create_job
from latlab.server.tables import Dataset

__all__ = ["CanaryLimits", "check_next"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CanaryLimits:
    """A campaign's canary settings (``DatasetCreate``), kept in its provenance."""

    limit_pct: float
    remeasure_drifted: int

    @classmethod
    def of(cls, dataset: Dataset) -> CanaryLimits:
        stored = (dataset.provenance or {}).get("canary") or {}
        defaults = DatasetCreate.model_fields
        return cls(
            float(stored.get("limit_pct", defaults["canary_limit_pct"].default)),
            int(stored.get("remeasure_drifted", defaults["remeasure_drifted"].default)),
        )

    def provenance(self) -> dict[str, Any]:
        return {"limit_pct": self.limit_pct, "remeasure_drifted": self.remeasure_drifted}


def check_next(session: Session, blobs: BlobStore, settings: Settings) -> bool:
    """Check one measuring campaign whose jobs have all finished; False when none changed."""
    for dataset in repository.measuring_campaigns(session):
        if repository.has_pending(session, dataset.id):
            continue
        if _check(session, blobs, settings, dataset):
            return True
    return False


def _check(session: Session, blobs: BlobStore, settings: Settings, dataset: Dataset) -> bool:
    config = stored_config(dataset.config or {})
    limits = CanaryLimits.of(dataset)
    policy = canary.CanaryPolicy.of(settings)
    waiting = queued = False
    models = canary.CanaryModels(blobs, settings)
    for device_id in (dataset.provenance or {}).get("devices", []):
        entries = repository.measured_entries(session, dataset.id, device_id)
        if not entries:
            continue
        first, last = entries[0].created_at, entries[-1].created_at
        points = canaries.around(session, device_id, config.identity_key(), first, last)
        closed = bool(points) and points[-1].measured_at > last
        recent = (utcnow() - last).total_seconds() < settings.canary_close_wait_s
        if policy.enabled and not closed and recent:
            queued |= canary.closing_canary(
                session, models, device_id, config, last, settings.max_attempts
            )
            waiting = True
            continue
        queued |= _remeasure(session, models, dataset, device_id, config, entries, points, limits)
    if queued:
        return True
    if waiting:
        return False
    if active.is_active(dataset) and active.next_round(session, blobs, settings, dataset):
        return True  # the next round is being prepared
    dataset.state = DatasetState.done.value
    log.info("dataset done", extra={"dataset_id": dataset.id})
    return True


def _remeasure(
    session: Session,
    models: canary.CanaryModels,
    dataset: Dataset,
    device_id: str,
    config: RuntimeConfig,
    entries: list[Any],
    points: list[CanaryPoint],
    limits: CanaryLimits,
) -> bool:
    """Queue the entries whose window drifted (and may be measured again); True if any.

    Only while the device is back at its reference speed: the canary that closed the campaign
    is within the limit. A shift that lasts would drift the re-measures too (measured on this
    VM: of 175 archs re-measured, 100 drifted again), and a device that never closed its
    window may be gone: their rows are kept and marked."""
    windows = canary.windows(points, [e.created_at for e in entries])
    closing = points[-1] if points and points[-1].measured_at > entries[-1].created_at else None
    if closing is None or windows.reference_ms is None:
        return False
    now_pct = 100.0 * (closing.median_ms / windows.reference_ms - 1.0)
    if abs(now_pct) > limits.limit_pct:
        log.info(
            "canary still drifted (%+.1f %%): drifted rows kept and marked",
            now_pct,
            extra={"dataset_id": dataset.id, "device_id": device_id},
        )
        return False
    again = [
        e
        for e, drift in zip(entries, windows.drift_pct, strict=True)
        if drift is not None
        and abs(drift) > limits.limit_pct
        and e.remeasured < limits.remeasure_drifted
    ]
    settings = models.settings
    if again and canary.CanaryPolicy.of(settings).enabled:
        # a fresh canary opens the window they are measured in (queued first, claimed first)
        canary.queue_canary(session, models, device_id, config, settings.max_attempts)
    for entry in again:
        job = create_job(
            session,
            JobCreate(model_id=entry.model_id, device_id=device_id, config=config),
            settings.max_attempts,
        )
        repository.remeasure(session, entry.dataset_arch_id, device_id, job.id)
    if again:
        log.info(
            "canary drifted: measuring again",
            extra={"dataset_id": dataset.id, "device_id": device_id, "entries": len(again)},
        )
    return bool(again)
