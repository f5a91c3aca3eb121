"""Training a GCN predictor (PyTorch, CPU): a fixed split by seed, early stopping on the
validation split, metrics on the held-out split. The only module that imports torch."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from latlab.metrics import RegressionMetrics, regression_metrics
from predictors.errors import PredictorError
from predictors.features import FEATURES, GraphFeatures, batch
from predictors.gcn import Gcn
from predictors.model import CostBaseline, GcnConfig, GcnPredictor, TargetScale

__all__ = ["Split", "TrainReport", "split_indices", "train_gcn"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Split:
    train: tuple[int, ...]
    val: tuple[int, ...]
    test: tuple[int, ...]


def split_indices(n: int, n_train: int, n_val: int, seed: int) -> Split:
    """A permutation of 0..n-1 by ``seed``: the first ``n_train`` train, the next ``n_val``
    validate (early stopping), the rest are held out."""
    if n_train < 1 or n_val < 1 or n_train + n_val >= n:
        raise PredictorError(
            f"cannot split {n} archs into {n_train} train, {n_val} validation and a test rest"
        )
    order = np.random.default_rng(seed).permutation(n)
    return Split(
        tuple(int(i) for i in order[:n_train]),
        tuple(int(i) for i in order[n_train : n_train + n_val]),
        tuple(int(i) for i in order[n_train + n_val :]),
    )


@dataclass(frozen=True)
class TrainReport:
    test: RegressionMetrics
    val: RegressionMetrics
    #: Epochs each member ran (early stopping may end one before ``config.epochs``).
    epochs: tuple[int, ...]
    predicted_ms: tuple[float, ...]  # on the test split, in its order
    true_ms: tuple[float, ...]


def _tensors(items: Sequence[GraphFeatures]) -> tuple[torch.Tensor, torch.Tensor]:
    data = batch(items)
    return torch.from_numpy(data.x), torch.from_numpy(data.adj)


def _member(
    x: torch.Tensor,
    adj: torch.Tensor,
    y: torch.Tensor,
    val: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    config: GcnConfig,
    seed: int,
    on_epoch: Callable[[int], None] | None,
) -> tuple[dict[str, np.ndarray], int]:
    torch.manual_seed(seed)
    model = Gcn(FEATURES, config.hidden, config.layers, config.dropout)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    loss_fn = torch.nn.L1Loss() if config.loss == "l1" else torch.nn.MSELoss()
    generator = torch.Generator().manual_seed(seed)
    best, best_state, since_best, epoch = float("inf"), copy.deepcopy(model.state_dict()), 0, 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), config.batch_size):
            idx = order[start : start + config.batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(x[idx], adj[idx]), y[idx])
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            val_loss = float(loss_fn(model(val[0], val[1]), val[2]))
        if val_loss < best:
            best, best_state, since_best = val_loss, copy.deepcopy(model.state_dict()), 0
        else:
            since_best += 1
        if on_epoch is not None:
            on_epoch(epoch)
        if config.patience is not None and since_best >= config.patience:
            break
    weights = {name: value.detach().numpy().copy() for name, value in best_state.items()}
    return weights, epoch


def train_gcn(
    features: Sequence[GraphFeatures],
    latency_ms: Sequence[float],
    config: GcnConfig,
    split: Split,
    meta: dict[str, object] | None = None,
    on_epoch: Callable[[int], None] | None = None,
) -> tuple[GcnPredictor, TrainReport]:
    """Train ``config.ensemble`` members on ``split.train``; keep each member's weights from
    its best validation epoch; score the ensemble on ``split.test``."""
    y_all = np.asarray(latency_ms, dtype=np.float64)
    if len(features) != len(y_all) or np.any(y_all <= 0) or not np.all(np.isfinite(y_all)):
        raise PredictorError("need one positive, finite latency per graph")
    baseline = (
        CostBaseline.fit([features[i] for i in split.train], y_all[list(split.train)])
        if config.baseline == "cost"
        else None
    )
    # what the network learns: the latency, or its ratio to the cost fit
    y_net = y_all / baseline(features) if baseline is not None else y_all
    target = TargetScale.fit(config.target, y_net[list(split.train)])

    def part(indices: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, adj = _tensors([features[i] for i in indices])
        return x, adj, torch.from_numpy(target.encode(y_net[list(indices)]))

    train, val = part(split.train), part(split.val)
    members, epochs = [], []
    for k in range(config.ensemble):
        weights, ran = _member(*train, val, config, config.seed + k, on_epoch)
        members.append(weights)
        epochs.append(ran)
        log.info("member trained", extra={"member": k, "epochs": ran})
    predictor = GcnPredictor(
        config=config,
        target=target,
        members=tuple(members),
        baseline=baseline,
        meta=dict(meta or {}),
    )

    def score(indices: tuple[int, ...]) -> tuple[RegressionMetrics, np.ndarray]:
        predicted, _ = predictor.predict([features[i] for i in indices])
        return regression_metrics(predicted.tolist(), y_all[list(indices)].tolist()), predicted

    test_metrics, test_pred = score(split.test)
    val_metrics, _ = score(split.val)
    report = TrainReport(
        test=test_metrics,
        val=val_metrics,
        epochs=tuple(epochs),
        predicted_ms=tuple(float(v) for v in test_pred),
        true_ms=tuple(float(y_all[i]) for i in split.test),
    )
    predictor = GcnPredictor(
        config=config,
        target=target,
        members=predictor.members,
        baseline=baseline,
        meta={
            **predictor.meta,
            "test": asdict(test_metrics),
            "val": asdict(val_metrics),
            "epochs": list(epochs),
        },
    )
    return predictor, report
