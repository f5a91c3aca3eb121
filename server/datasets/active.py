"""Active campaigns (``strategy=active``): a budget of archs on one device, measured in rounds.

The first round is chosen when the campaign is created: k-means over the other devices'
latencies (``latlab.predictors.transfer.choose``), so it needs sources for the space. When a
round is measured (the canary check finds nothing pending), a transfer predictor is fitted on
what the campaign measured and its cross-validated error is recorded as the round's (the user
stops when it is good enough: ``DELETE`` the campaign, or let it run); while the budget lasts the
next round is chosen to cover what the measured archs leave uncovered (the measured archs fixed
as centres) and prepared like any campaign's archs. After the last round the fitted predictor is
registered as the device's next version (current by the registry's rule: none yet, or better).

Measured on LatBench's 13 devices (leave one out, 3 seeds), 20 archs in rounds of 10: coverage
rounds rho 0.958 and 74.7 % within +-10 %; rounds of the archs that most reduce the predictive
variance 0.960 and 72.7 %; the 20 chosen at once (a budget known up front, no estimate on the
way) 0.961 and 76.8 %.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from sqlalchemy.orm import Session

from latlab.errors import LatlabError
from latlab.predictors.features import arch_features
from latlab.predictors.transfer import MIN_SAMPLES, choose, guard
from latlab.schemas import DatasetCreate, DatasetState, TransferFitIn, TransferSources
from latlab.server.blobstore import BlobStore
from latlab.server.config import Settings
from latlab.server.datasets import repository
from latlab.server.errors import InvalidInput
from latlab.server.tables import Dataset, Device
from latlab.server.transfer import service as transfer
from latlab.spaces import GraphForm, get_space

__all__ = ["first_round", "is_active", "next_round"]

log = logging.getLogger(__name__)

#: Rounds a budget is cut into unless ``round_size`` says otherwise.
DEFAULT_ROUNDS = 4


def _sources_body(
    device_id: str, space: str, params: dict[str, Any], sources: Any, form: str
) -> TransferSources:
    return TransferSources(
        device_id=device_id,
        space=space,
        space_params=params,
        sources=sources,
        form=GraphForm(form),
    )


def first_round(
    session: Session, body: DatasetCreate, devices: list[Device]
) -> tuple[list[str], dict[str, Any]]:
    """Check an active campaign's request and choose its first round: (archs, what the
    campaign records of itself under ``provenance["active"]``)."""
    if body.archs is not None or body.n is not None:
        raise InvalidInput("an active campaign takes a budget, not archs or n")
    if body.budget is None:
        raise InvalidInput("an active campaign needs a budget: the archs to measure in all")
    if len(devices) != 1:
        raise InvalidInput(
            f"an active campaign measures one device ({len(devices)} given): its rounds follow "
            "that device's predictor"
        )
    size = min(
        body.round_size or max(MIN_SAMPLES + 1, math.ceil(body.budget / DEFAULT_ROUNDS)),
        body.budget,
    )
    resolved = transfer.resolve(
        session,
        _sources_body(
            devices[0].id, body.space, dict(body.space_params), body.sources, body.form.value
        ),
    )
    if body.budget > len(resolved.basis.table.archs):
        raise InvalidInput(
            f"a budget of {body.budget} archs, but the sources share {len(resolved.basis.table.archs)}"
        )
    archs = choose(resolved.basis, size, body.seed)
    active = {
        "budget": body.budget,
        "round_size": size,
        "sources": list(body.sources) if body.sources is not None else None,
        "rounds": [],
    }
    return archs, active


def is_active(dataset: Dataset) -> bool:
    return "active" in (dataset.provenance or {})


def next_round(session: Session, blobs: BlobStore, settings: Settings, dataset: Dataset) -> bool:
    """After a measured round: record its estimate; queue the next round while the budget lasts
    (True: the campaign is preparing again), else register the predictor (False). What goes
    wrong (the sources deleted meanwhile, too few archs measured) ends the campaign with the
    reason in ``provenance["active"]["error"]``."""
    provenance = dict(dataset.provenance or {})
    active = dict(provenance["active"])
    try:
        more = _next_round(session, blobs, settings, dataset, provenance, active)
    except (LatlabError, InvalidInput) as exc:
        active["error"] = getattr(exc, "message", str(exc))
        more = False
    provenance["active"] = active
    dataset.provenance = provenance  # a new dict: the JSON column sees the change
    return more


def _next_round(
    session: Session,
    blobs: BlobStore,
    settings: Settings,
    dataset: Dataset,
    provenance: dict[str, Any],
    active: dict[str, Any],
) -> bool:
    device_id = provenance["devices"][0]
    rounds = list(active["rounds"])
    resolved = transfer.resolve(
        session,
        _sources_body(
            device_id,
            dataset.space,
            dict(dataset.space_params),
            active["sources"],
            dataset.form or GraphForm.pruned,
        ),
    )
    basis = resolved.basis
    measured = {
        r.arch: r.latency_ms
        for r in repository.measurement_rows(session, dataset, with_samples=False)
        if r.device_id == device_id and r.arch in basis.row_of
    }
    archs = list(measured)
    if len(archs) < MIN_SAMPLES:
        active["error"] = f"{len(archs)} archs measured: too few to fit a predictor"
        return False
    latency = [measured[a] for a in archs]
    features = arch_features(dataset.space, dict(dataset.space_params), archs)
    chosen = guard(basis, archs, latency, features)
    rounds.append(
        {"round": len(rounds) + 1, "measured": len(archs), "served": chosen.served, "cv": chosen.cv}
    )
    active["rounds"] = rounds
    every = [a.arch for a in repository.archs(session, dataset.id)]
    left = int(active["budget"]) - len(every)
    if left > 0:
        space = get_space(dataset.space, **dataset.space_params)
        new = choose(basis, min(int(active["round_size"]), left), len(rounds), measured=every)
        repository.add_archs(
            session,
            dataset.id,
            [(a, str(space.parse(a).index)) for a in new],
            first_position=len(every),
        )
        dataset.state = DatasetState.preparing.value
        log.info(
            "active campaign: next round",
            extra={"dataset_id": dataset.id, "round": len(rounds) + 1, "archs": len(new)},
        )
    else:
        out = transfer.fit(
            session,
            blobs,
            settings,
            TransferFitIn(
                device_id=device_id,
                space=dataset.space,
                space_params=dict(dataset.space_params),
                sources=active["sources"],
                form=GraphForm(dataset.form or GraphForm.pruned),
                archs=list[str | int](archs),
            ),
            resolved,  # the sources read once per round
        )
        active["predictor_id"] = out.id
    return left > 0
