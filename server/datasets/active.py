"""Active campaigns (``strategy=active``): a budget of archs on one device, measured in rounds.

The first round is chosen when the campaign is created: k-means over the other devices'
latencies (``latlab.predictors.transfer.choose``). When a round is measured (the canary check
finds nothing pending), a transfer predictor is fitted on what the campaign measured and its
cross-validated error is recorded as the round's (the user stops when it is good enough:
``DELETE`` the campaign, or let it run); while the budget lasts the next round is chosen to cover
what the measured archs leave uncovered (the measured archs fixed as centres) and prepared like
any campaign's archs. After the last round the fitted predictor is registered as the device's
next version (current by the registry's rule: none yet, or better).

A lab where no other device has the space (its first campaign) starts cold: the rounds cover a
pool of ``POOL`` archs sampled from the space by their own costs and choices
(``transfer.own_points``), the estimate is the linear models' of those costs (``cost``, ``full``,
cross-validated), and the last round registers the better one as a ``gcn``-kind predictor that
serves it (``linear:<design>``; ``latlab train`` on the campaign fits the GCN itself).

Measured on LatBench's 13 devices (leave one out, 3 seeds), 20 archs in rounds of 10: coverage
rounds rho 0.958 and 74.7 % within +-10 %; rounds of the archs that most reduce the predictive
variance 0.960 and 72.7 %; the 20 chosen at once (a budget known up front, no estimate on the
way) 0.961 and 76.8 %.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from latlab.errors import LatlabError
from latlab.latency_model import to_artifact
from latlab.predictors.features import GraphFeatures, arch_features
from latlab.predictors.linear import LinearModel
from latlab.predictors.model import GcnConfig, GcnPredictor, TargetScale
from latlab.predictors.transfer import MIN_SAMPLES, Guard, choose, cover, guard, own_points
from latlab.schemas import DatasetCreate, DatasetState, TransferFitIn, TransferSources
from latlab.server.blobstore import BlobStore
from latlab.server.config import Settings
from latlab.server.datasets import repository
from latlab.server.errors import InvalidInput
from latlab.server.registry.service import register_predictor
from latlab.server.tables import Dataset, Device
from latlab.server.transfer import service as transfer
from latlab.spaces import GraphForm, get_space

__all__ = ["first_round", "is_active", "next_round"]

log = logging.getLogger(__name__)

#: Rounds a budget is cut into unless ``round_size`` says otherwise.
DEFAULT_ROUNDS = 4
#: A cold campaign's candidates: this many archs sampled from the space (by its seed).
POOL = 500


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
    active: dict[str, Any] = {
        "budget": body.budget,
        "round_size": size,
        "sources": list(body.sources) if body.sources is not None else None,
        "rounds": [],
    }
    try:
        resolved = transfer.resolve(
            session,
            _sources_body(
                devices[0].id, body.space, dict(body.space_params), body.sources, body.form.value
            ),
        )
    except transfer.NoSources:
        if body.sources is not None:
            raise  # the devices named have no latencies for the space: say so
        pool = _pool(body.space, dict(body.space_params), body.seed)
        if body.budget > len(pool):
            raise InvalidInput(
                f"a budget of {body.budget} archs, but a first campaign (no other device has "
                f"{body.space}) chooses among {len(pool)} sampled archs"
            ) from None
        active["cold"] = {"pool_seed": body.seed}
        points = own_points(arch_features(body.space, dict(body.space_params), pool))
        return [pool[i] for i in cover(points, size, body.seed)], active
    if body.budget > len(resolved.basis.table.archs):
        raise InvalidInput(
            f"a budget of {body.budget} archs, but the sources cover {len(resolved.basis.table.archs)}"
        )
    return choose(resolved.basis, size, body.seed), active


def _pool(space_name: str, params: dict[str, Any], seed: int) -> list[str]:
    """A cold campaign's candidates: up to ``POOL`` distinct archs sampled from the space."""
    space = get_space(space_name, **params)
    return list(dict.fromkeys(space.encode(a) for a in space.sample(POOL, seed)))


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
    cold = active.get("cold")
    resolved = (
        None
        if cold is not None
        else transfer.resolve(
            session,
            _sources_body(
                device_id,
                dataset.space,
                dict(dataset.space_params),
                active["sources"],
                dataset.form or GraphForm.pruned,
            ),
        )
    )
    basis = resolved.basis if resolved is not None else None
    rows = [
        r
        for r in repository.measurement_rows(session, dataset, with_samples=False)
        if r.device_id == device_id and (basis is None or r.arch in basis.row_of)
    ]
    measured = {r.arch: r.latency_ms for r in rows}
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
        n = min(int(active["round_size"]), left)
        if basis is not None:
            new = choose(basis, n, len(rounds), measured=every)
        else:
            assert cold is not None
            new = _cold_round(dataset, int(cold["pool_seed"]), n, len(rounds), every)
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
    elif resolved is None:
        runtime = Counter(r.runtime for r in rows).most_common(1)[0][0]
        active["predictor_id"] = _register_linear(
            session, blobs, settings, dataset, device_id, runtime, features, latency, chosen
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


def _cold_round(dataset: Dataset, pool_seed: int, k: int, seed: int, every: list[str]) -> list[str]:
    """A cold campaign's next ``k``: the pool's archs that cover what ``every`` arch of the
    campaign so far leaves uncovered, by their own costs and choices."""
    params = dict(dataset.space_params)
    taken = set(every)
    pool = [a for a in _pool(dataset.space, params, pool_seed) if a not in taken]
    if not pool:
        raise InvalidInput(f"every one of the {POOL} sampled archs is measured")
    points = own_points(arch_features(dataset.space, params, pool + every))
    picked = cover(points[: len(pool)], min(k, len(pool)), seed, points[len(pool) :])
    return [pool[i] for i in picked]


def _register_linear(
    session: Session,
    blobs: BlobStore,
    settings: Settings,
    dataset: Dataset,
    device_id: str,
    runtime: str,
    features: list[GraphFeatures],
    latency_ms: list[float],
    chosen: Guard,
) -> str:
    """A cold campaign's predictor: the linear model the guard chose, fitted on every measured
    arch, as a ``gcn``-kind version without members (what ``latlab train`` registers when the
    floor wins)."""
    floor = LinearModel.fit(features, np.asarray(latency_ms, dtype=np.float64), chosen.design)
    model = GcnPredictor(
        GcnConfig(),
        TargetScale("log", 0.0, 1.0),
        (),
        floor,
        0.0,
        {"served": chosen.served, "cv": chosen.cv, "candidates": chosen.candidates},
    )
    out = register_predictor(
        session,
        blobs,
        settings,
        artifact=to_artifact(model),
        plot_png=None,
        device_id=device_id,
        runtime=runtime,
        space=dataset.space,
        space_params=dict(dataset.space_params),
        training={"kind": "active campaign", "dataset_id": dataset.id, "samples": len(latency_ms)},
    )
    return out.id
