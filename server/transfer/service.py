"""Transfer predictors (``latlab.predictors.transfer``): which archs a device should measure,
and the predictor fitted from its measurements and the other devices' latencies, registered as
the next version of the device + runtime.

Sources are read from every dataset of the space (campaigns and imports alike): a source is a
device in one graph form (a device measured in two forms is two sources). A device with an
agent measures the planned archs (the SDK's ``adapt`` runs them as a campaign); an imported
device has no agent: its samples are taken from its imported latencies.
"""

from __future__ import annotations

import logging
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from latlab.latency_model import to_artifact
from latlab.predictors.features import arch_features
from latlab.predictors.transfer import (
    MIN_SAMPLES,
    Guard,
    SourceTable,
    TransferBasis,
    TransferPredictor,
    choose,
    guard,
    served_predictions,
)
from latlab.schemas import (
    PredictorOut,
    TransferFitIn,
    TransferPlanIn,
    TransferPlanOut,
    TransferSources,
)
from latlab.server.blobstore import BlobStore
from latlab.server.config import Settings
from latlab.server.datasets import repository as datasets
from latlab.server.devices import repository as device_repository
from latlab.server.devices.service import get_device
from latlab.server.errors import InvalidInput
from latlab.server.registry.service import register_predictor
from latlab.server.tables import Device
from latlab.spaces import GraphForm, get_space
from latlab.untrusted import excerpt

__all__ = ["NoSources", "Resolved", "fit", "plan", "resolve", "served"]

log = logging.getLogger(__name__)

#: An imported device's form when its import named none.
UNKNOWN_FORM = "unknown"


class NoSources(InvalidInput):
    """No other device has latencies for the space (a 422)."""


@dataclass(frozen=True)
class Resolved:
    target: Device
    form: str
    #: The target's latency per arch in that form (median of its measurements), and runtime.
    own: dict[str, float]
    runtime: str | None
    basis: TransferBasis
    names: dict[str, str]  # source label -> device name


def resolve(session: Session, body: TransferSources) -> Resolved:
    """The target device, its form and latencies, and the sources' basis; 422s that say what
    is missing."""
    target = get_device(session, body.device_id)
    get_space(body.space, **body.space_params)  # an unknown space or parameter: a 422
    source_ids = None if body.sources is None else [get_device(session, s).id for s in body.sources]
    if source_ids is not None and target.id in source_ids:
        raise InvalidInput("the target device cannot be its own source")
    rows = datasets.space_latencies(
        session,
        body.space,
        body.space_params,
        None if source_ids is None else [*source_ids, target.id],
    )
    per: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    runtimes: Counter[str] = Counter()
    for r in rows:
        per[(r.device_id, r.form or UNKNOWN_FORM)][r.arch].append(r.latency_ms)
        if r.device_id == target.id:
            runtimes[r.runtime] += 1
    table = {key: {a: statistics.median(v) for a, v in archs.items()} for key, archs in per.items()}
    form = _target_form(body, target, [f for (d, f) in table if d == target.id])
    own = table.get((target.id, form), {})
    sources = {key: t for key, t in table.items() if key[0] != target.id}
    if not sources:
        raise NoSources(
            f"no other device has latencies for {body.space}"
            + (" among the sources named" if source_ids is not None else "")
            + ": import published ones (latlab dataset import FILE...) or measure a campaign"
        )
    forms_of: dict[str, set[str]] = defaultdict(set)
    for device_id, f in sources:
        forms_of[device_id].add(f)
    devices = {d.id: d for d in device_repository.by_ids(session, list(forms_of))}  # exact ids

    def label(key: tuple[str, str]) -> str:
        return key[0] if len(forms_of[key[0]]) == 1 else f"{key[0]}:{key[1]}"

    basis = TransferBasis.of(SourceTable.of({label(k): t for k, t in sources.items()}))
    names = {
        label(k): devices[k[0]].name + (f" ({k[1]})" if len(forms_of[k[0]]) > 1 else "")
        for k in sources
    }
    runtime = runtimes.most_common(1)[0][0] if runtimes else None
    return Resolved(target, form, own, runtime, basis, names)


def _target_form(body: TransferSources, target: Device, has: list[str]) -> str:
    if body.form is not None:
        return body.form.value
    if len(set(has)) > 1:
        raise InvalidInput(
            f"device {excerpt(target.name)} has latencies in the forms {', '.join(sorted(has))}: "
            "name one (form)"
        )
    return has[0] if has else GraphForm.pruned.value


def _sources_out(resolved: Resolved) -> list[dict[str, str]]:
    return [{"id": s, "name": resolved.names[s]} for s in resolved.basis.table.sources]


def plan(session: Session, body: TransferPlanIn) -> TransferPlanOut:
    resolved = resolve(session, body)
    basis, target = resolved.basis, resolved.target
    measure = target.source == "agent"
    allowed = list(basis.table.archs)
    if body.candidates is not None:
        space = get_space(body.space, **body.space_params)
        asked = {space.encode(space.parse(a)) for a in body.candidates}
        allowed = [a for a in allowed if a in asked]
        if not allowed:
            raise InvalidInput(
                f"none of the {len(asked)} candidates is among the {len(basis.table.archs)} "
                "archs the sources cover"
            )
    if not measure:
        allowed = [a for a in allowed if a in resolved.own]
        if not allowed:
            raise InvalidInput(
                f"device {excerpt(target.name)} has no agent to measure on and none of the "
                f"{len(basis.table.archs)} archs the sources cover among its latencies for "
                f"{body.space} ({resolved.form} form)"
            )
    candidates = None if len(allowed) == len(basis.table.archs) else allowed
    pool = len(allowed)
    if body.samples > pool:
        raise InvalidInput(
            f"{body.samples} samples asked for, but only {pool} archs can be chosen: "
            "those at least half of the sources have"
            + (", among the candidates" if body.candidates is not None else "")
            + ("" if measure else ", that the imported device has")
        )
    archs = choose(basis, body.samples, body.seed, candidates)
    return TransferPlanOut(
        archs=archs,
        measure=measure,
        form=GraphForm(resolved.form) if resolved.form != UNKNOWN_FORM else GraphForm.pruned,
        sources=_sources_out(resolved),
        shared_archs=len(basis.table.archs),
        left_out=basis.table.left_out,
    )


def fit(
    session: Session,
    blobs: BlobStore,
    settings: Settings,
    body: TransferFitIn,
    resolved: Resolved | None = None,
) -> PredictorOut:
    """``resolved``: what ``resolve`` gave for the same target and sources, when the caller has
    it already (an active campaign's last round)."""
    resolved = resolved or resolve(session, body)
    target, basis = resolved.target, resolved.basis
    own = resolved.own
    if body.archs is not None:
        space = get_space(body.space, **body.space_params)
        keys = [space.encode(space.parse(a)) for a in body.archs]
        missing = [k for k in keys if k not in own]
        if missing:
            raise InvalidInput(
                f"device {excerpt(target.name)} has no latency for {len(missing)} of the archs "
                f"(e.g. {excerpt(missing[0])}): measure them first"
            )
        own = {k: own[k] for k in keys}
    usable = [a for a in own if a in basis.row_of]
    if len(usable) < MIN_SAMPLES or resolved.runtime is None:
        raise InvalidInput(
            f"device {excerpt(target.name)} has {len(usable)} measured archs of {body.space} "
            f"that the sources cover; a transfer predictor needs at least {MIN_SAMPLES}: "
            "plan and measure some (latlab adapt)"
        )
    latency = [own[a] for a in usable]
    chosen, log_mean, log_std = served(body.space, dict(body.space_params), basis, usable, latency)
    cv = chosen.cv
    meta: dict[str, Any] = {
        "sources": _sources_out(resolved),
        "samples": len(usable),
        "archs": usable,
        "form": resolved.form,
        "shared_archs": len(basis.table.archs),
        "served": chosen.served,
        "cv": cv,
        "candidates": chosen.candidates,
    }
    model = TransferPredictor(
        body.space,
        dict(body.space_params),
        basis.table.archs,
        log_mean.astype(np.float32),
        log_std.astype(np.float32),
        meta,
    )
    out = register_predictor(
        session,
        blobs,
        settings,
        artifact=to_artifact(model),
        plot_png=None,
        device_id=target.id,
        runtime=resolved.runtime,
        space=body.space,
        space_params=dict(body.space_params),
        training={"kind": "transfer", "form": resolved.form, "samples": len(usable)},
        current=body.current,
    )
    log.info(
        "transfer predictor fitted",
        extra={"device_id": target.id, "samples": len(usable), "sources": len(basis.table.sources)},
    )
    return out


def served(
    space: str,
    space_params: dict[str, Any],
    basis: TransferBasis,
    archs: list[str],
    latency_ms: list[float],
) -> tuple[Guard, np.ndarray, np.ndarray]:
    """The guard's choice for these measurements and its predictions for every shared arch."""
    features = arch_features(space, space_params, archs)
    chosen = guard(basis, archs, latency_ms, features)
    log_mean, log_std = served_predictions(
        basis,
        archs,
        latency_ms,
        chosen,
        lambda: arch_features(space, space_params, list(basis.table.archs)),
        features,
    )
    return chosen, log_mean, log_std
