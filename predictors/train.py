"""Training a latency predictor (PyTorch, CPU): GCN members over cross-validation folds, linear
floors, and the floor guard. The only module that imports torch.

The training archs are cut into ``config.folds`` folds by seed. Member k trains on every fold
but k and stops early on fold k; the linear models are fitted the same way, fold by fold. So
every arch of a trained fold has a prediction from models that never saw it: the
cross-validated (out-of-fold) predictions. On them the floor guard scores every candidate —
the GCN alone, each linear floor alone, and blends of the two — by the mean absolute log error
(the relative error, the figure that "within ±10 %" counts), and the predictor serves the best
one, saying which (``GcnPredictor.served``). A GCN that loses to a linear model on data it did
not see is never served silently. Held-out test archs, if any, are scored last.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from latlab.metrics import RegressionMetrics, regression_metrics
from latlab.predictors.errors import PredictorError
from latlab.predictors.features import FEATURES, GraphFeatures, batch
from latlab.predictors.gcn import Gcn
from latlab.predictors.linear import Design, LinearModel
from latlab.predictors.model import GcnConfig, GcnPredictor, Member, TargetScale

__all__ = ["TrainReport", "fold_indices", "train_predictor"]

log = logging.getLogger(__name__)

#: The GCN's weights against a floor that the guard tries (1.0: the GCN alone).
BLEND_WEIGHTS = (0.0, 0.25, 0.5, 0.75)
#: Fewest training archs: two folds of one arch and a third to fit on (a smoke test, not a
#: predictor: fewer archs than folds shrink the folds to one arch each).
MIN_TRAIN_ARCHS = 3


@dataclass(frozen=True)
class TrainReport:
    #: What is served, and its cross-validated metrics.
    served: str
    cv: RegressionMetrics
    #: Every candidate's cross-validated metrics (the guard's table), the served one first,
    #: then best first.
    candidates: tuple[tuple[str, RegressionMetrics], ...]
    #: Epochs each member ran (early stopping may end one before ``config.epochs``).
    epochs: tuple[int, ...]
    train_s: float
    #: On the held-out archs, if any were held out.
    test: RegressionMetrics | None
    #: The held-out predictions and truths (or the cross-validated ones when nothing is held
    #: out): what the scatter plot shows.
    predicted_ms: tuple[float, ...]
    true_ms: tuple[float, ...]


def _threads_within_affinity() -> None:
    """No more torch threads than CPUs this process may run on: torch counts the machine's
    cores, and two spinning threads pinned to one CPU (``latlab.lab.local`` pins its process
    beside the agent's timing CPU) trained FBNet's GCN 25 x slower (492 s against 19 s)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if cpus and torch.get_num_threads() > cpus:
        torch.set_num_threads(cpus)


def fold_indices(n: int, folds: int, seed: int) -> list[np.ndarray]:
    """``folds`` disjoint folds of 0..n-1, by a permutation of ``seed``."""
    if folds < 2 or n < folds:
        raise PredictorError(f"cannot cut {n} archs into {folds} folds")
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(part) for part in np.array_split(order, folds)]


def _log_error(log_pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.abs(log_pred - np.log(y))))


def train_predictor(
    features: Sequence[GraphFeatures],
    latency_ms: Sequence[float],
    config: GcnConfig,
    *,
    test: Sequence[int] = (),
    meta: dict[str, object] | None = None,
    on_epoch: Callable[[int], None] | None = None,
    guard: bool = True,
) -> tuple[GcnPredictor, TrainReport]:
    """Train on every item not in ``test``; ``on_epoch(n)`` advances a progress bar by n
    epochs (a member that stops early advances it by the epochs it skipped). ``guard=False``
    serves the GCN whatever the floors score (to measure the GCN itself; the candidates are
    still scored and reported)."""
    started = time.perf_counter()
    _threads_within_affinity()
    y_all = np.asarray(latency_ms, dtype=np.float64)
    if len(features) != len(y_all) or np.any(y_all <= 0) or not np.all(np.isfinite(y_all)):
        raise PredictorError("need one positive, finite latency per graph")
    held_out = sorted({int(i) for i in test})
    fit = np.setdiff1d(np.arange(len(features)), held_out)
    if len(fit) < MIN_TRAIN_ARCHS:
        raise PredictorError(
            f"{len(fit)} training archs are too few: a predictor needs at least {MIN_TRAIN_ARCHS}"
        )
    feats = [features[i] for i in fit]
    y = y_all[fit]
    folds = fold_indices(len(fit), min(config.folds, len(fit)), config.seed)
    designs: tuple[Design, ...] = ("full", "onehot") if feats[0].onehot.size else ("full",)
    oof_linear, baselines = _linear_folds(feats, y, folds, designs)
    members, epochs, oof_gcn, target = _members(feats, y, folds, baselines, config, on_epoch)
    candidates = _candidates(oof_gcn, oof_linear)
    scored = ~np.isnan(oof_gcn)  # the archs every candidate has an out-of-fold prediction of
    errors = {name: _log_error(p[scored], y[scored]) for name, (_, p) in candidates.items()}
    ranked = sorted(candidates, key=lambda name: errors[name])
    best = ranked[0] if guard else "gcn"
    gcn_weight = candidates[best][0]
    floor_design: Design | None = None if best == "gcn" else best.split(":")[-1]  # type: ignore[assignment]
    table = tuple(
        (name, regression_metrics(np.exp(candidates[name][1][scored]).tolist(), y[scored].tolist()))
        for name in [best, *(n for n in ranked if n != best)]
    )
    predictor = GcnPredictor(
        config=config,
        target=target,
        members=tuple(members) if gcn_weight > 0 else (),
        floor=LinearModel.fit(feats, y, floor_design) if floor_design else None,
        gcn_weight=gcn_weight,
    )
    test_metrics = None
    if held_out:
        predicted, _ = predictor.predict([features[i] for i in held_out])
        shown: tuple[np.ndarray, np.ndarray] = (predicted, y_all[held_out])
        test_metrics = regression_metrics(shown[0].tolist(), shown[1].tolist())
    else:
        shown = (np.exp(candidates[best][1][scored]), y[scored])
    report = TrainReport(
        served=predictor.served,
        cv=table[0][1],
        candidates=table,
        epochs=tuple(epochs),
        train_s=time.perf_counter() - started,
        test=test_metrics,
        predicted_ms=tuple(float(v) for v in shown[0]),
        true_ms=tuple(float(v) for v in shown[1]),
    )
    log.info("predictor trained", extra={"served": report.served, "s": round(report.train_s, 1)})
    return replace(
        predictor,
        meta={
            **(meta or {}),
            "served": report.served,
            "cv": report.cv.to_dict(),
            "candidates": {name: m.to_dict() for name, m in table},
            "test": test_metrics.to_dict() if test_metrics is not None else None,
            "epochs": list(epochs),
            "train_s": round(report.train_s, 2),
        },
    ), report


def _linear_folds(
    feats: Sequence[GraphFeatures],
    y: np.ndarray,
    folds: list[np.ndarray],
    designs: tuple[Design, ...],
) -> tuple[dict[Design, np.ndarray], list[LinearModel]]:
    """The floors' out-of-fold log predictions, and per fold the cost baseline fitted on the
    other folds (what member k learns a correction of)."""
    oof = {d: np.full(len(y), np.nan) for d in designs}
    baselines = []
    for fold in folds:
        rest = np.setdiff1d(np.arange(len(y)), fold)
        train = [feats[i] for i in rest]
        for design in designs:
            oof[design][fold] = np.log(
                LinearModel.fit(train, y[rest], design)([feats[i] for i in fold])
            )
        baselines.append(LinearModel.fit(train, y[rest], "cost"))
    return oof, baselines


def _members(
    feats: Sequence[GraphFeatures],
    y: np.ndarray,
    folds: list[np.ndarray],
    baselines: list[LinearModel],
    config: GcnConfig,
    on_epoch: Callable[[int], None] | None,
) -> tuple[list[Member], list[int], np.ndarray, TargetScale]:
    """Member k trained on every fold but k: the members, their epochs, their out-of-fold log
    predictions (NaN on folds without a member) and the target scale they share."""
    with_baseline = config.baseline == "linear"
    reference = LinearModel.fit(feats, y, "cost") if with_baseline else None
    target = TargetScale.fit(config.target, y / reference(feats) if reference else y)
    x_all, adj_all, live_all = _tensors(feats)
    members: list[Member] = []
    epochs: list[int] = []
    oof = np.full(len(y), np.nan)
    for k in range(min(config.n_members, len(folds))):
        fold = folds[k]
        rest = np.setdiff1d(np.arange(len(y)), fold)
        baseline = baselines[k] if with_baseline else None
        encoded = torch.from_numpy(target.encode(y / baseline(feats) if baseline else y))
        weights, ran = _member(
            (x_all[rest], adj_all[rest], live_all[rest], encoded[rest]),
            (x_all[fold], adj_all[fold], live_all[fold], encoded[fold]),
            config,
            config.seed + k,
            on_epoch,
        )
        member = Member(weights, baseline)
        members.append(member)
        epochs.append(ran)
        alone = GcnPredictor(config, target, (member,), None, 1.0)
        oof[fold] = alone.member_log_ms([feats[i] for i in fold])[0]
        log.info("member trained", extra={"member": k, "epochs": ran})
    return members, epochs, oof, target


def _candidates(
    oof_gcn: np.ndarray, oof_linear: dict[Design, np.ndarray]
) -> dict[str, tuple[float, np.ndarray]]:
    """What the guard chooses from: name -> (the GCN's weight, out-of-fold log predictions)."""
    candidates: dict[str, tuple[float, np.ndarray]] = {"gcn": (1.0, oof_gcn)}
    for design, oof in oof_linear.items():
        for w in BLEND_WEIGHTS:
            name = f"linear:{design}" if w == 0 else f"blend:{w:g}:{design}"
            candidates[name] = (w, w * oof_gcn + (1 - w) * oof)
    return candidates


def _tensors(items: Sequence[GraphFeatures]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    data = batch(items)
    return torch.from_numpy(data.x), torch.from_numpy(data.adj), torch.from_numpy(data.adj_live)


#: x, adj, adj_live, target
Part = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _member(
    train: Part,
    val: Part,
    config: GcnConfig,
    seed: int,
    on_epoch: Callable[[int], None] | None,
) -> tuple[dict[str, np.ndarray], int]:
    """One member: its weights from the epoch with the best loss on ``val``."""
    torch.manual_seed(seed)
    x, adj, adj_live, y = train
    model = Gcn(FEATURES, config.hidden, config.layers, config.dropout)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    schedule = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
        if config.lr_schedule == "cosine"
        else None
    )
    loss_fn = torch.nn.L1Loss() if config.loss == "l1" else torch.nn.MSELoss()
    generator = torch.Generator().manual_seed(seed)
    best, best_state, since_best, ran = float("inf"), copy.deepcopy(model.state_dict()), 0, 0
    for epoch in range(1, config.epochs + 1):
        ran = epoch
        model.train()
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), config.batch_size):
            idx = order[start : start + config.batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(x[idx], adj[idx], adj_live[idx]), y[idx])
            loss.backward()
            optimizer.step()
        if schedule is not None:
            schedule.step()
        model.eval()
        with torch.no_grad():
            val_loss = float(loss_fn(model(val[0], val[1], val[2]), val[3]))
        if val_loss < best:
            best, best_state, since_best = val_loss, copy.deepcopy(model.state_dict()), 0
        else:
            since_best += 1
        if on_epoch is not None:
            on_epoch(1)
        if config.patience is not None and since_best >= config.patience:
            break
    if on_epoch is not None and ran < config.epochs:
        on_epoch(config.epochs - ran)
    weights = {name: value.detach().numpy().copy() for name, value in best_state.items()}
    return weights, ran
