"""Linear latency models on an item's linear columns (predictors.features.GraphFeatures):
the floors a learned predictor must beat, and the baseline the GCN learns a correction of.

Three designs:

- ``cost``: the cost of the live ops and the cost of the dead ones (MFLOPs and MB moved each),
  a relative ridge as ``full`` below: what the GCN learns a correction of (a smooth baseline
  leaves it the structure to learn; one of the one-hot columns too would leave it noise);
- ``onehot``: the space's one-hot arch encoding (NAS-Bench-201: 6 edges x 5 ops), plain least
  squares with an intercept: the floor a predictor must beat;
- ``full``: the cost of the live ops and the cost of the dead ones (MFLOPs and MB moved each),
  the one-hot of the live choices and the one-hot of the dead ones, fitted as a ridge
  regression on the relative error (each row weighted by 1 / latency, so a 1 ms and a 10 ms
  arch count alike), its penalty chosen by leave-one-out cross-validation. Whether a device
  computes dead ops is read off its data: the dead columns get weight only where the latencies
  say they cost time (the penalty pulls them to zero otherwise, so a few archs with dead ops
  do not make a pruning device's model charge for them).

A prediction is never below ``floor_ms`` (5 % of the training median): a linear model can
extrapolate below zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from latlab.predictors.errors import PredictorError
from latlab.predictors.features import GraphFeatures

__all__ = ["Design", "LinearModel", "design_matrix"]

Design = Literal["cost", "onehot", "full"]

#: Ridge penalties tried, relative to the mean diagonal of the standardised normal matrix.
_PENALTIES = np.logspace(-6, 1, 15)


def design_matrix(features: Sequence[GraphFeatures], design: Design) -> np.ndarray:
    """One row per item, without the intercept column."""
    if design == "onehot":
        rows = [f.onehot for f in features]
    elif design == "cost":
        rows = [
            np.concatenate([f.cost_pruned, np.subtract(f.cost_full, f.cost_pruned)])
            for f in features
        ]
    else:
        rows = [_full_row(f) for f in features]
    return np.asarray(rows, dtype=np.float64).reshape(len(features), -1)


def _full_row(f: GraphFeatures) -> np.ndarray:
    """Live costs, dead costs, live one-hot, dead one-hot (where the space has dead ops)."""
    dead_cost = np.subtract(f.cost_full, f.cost_pruned)
    if not f.onehot_live.size:
        return np.concatenate([f.cost_pruned, dead_cost, f.onehot])
    return np.concatenate([f.cost_pruned, dead_cost, f.onehot_live, f.onehot - f.onehot_live])


@dataclass(frozen=True)
class LinearModel:
    design: Design
    coef: tuple[float, ...]
    intercept_ms: float
    floor_ms: float
    #: The ridge penalty chosen (0 for plain least squares).
    penalty: float = 0.0

    @classmethod
    def fit(
        cls,
        features: Sequence[GraphFeatures],
        latency_ms: np.ndarray,
        design: Design,
        penalty: float | None = None,
    ) -> LinearModel:
        """``onehot``: least squares; ``cost``, ``full``: relative ridge, its penalty by
        leave-one-out unless given."""
        y = np.asarray(latency_ms, dtype=np.float64)
        x = design_matrix(features, design)
        floor = 0.05 * float(np.median(y))
        if design == "onehot":
            if x.shape[1] == 0:
                raise PredictorError("the one-hot floor needs archs of a search space")
            coef, *_ = np.linalg.lstsq(np.column_stack([x, np.ones(len(y))]), y, rcond=None)
            return cls(design, tuple(float(c) for c in coef[:-1]), float(coef[-1]), floor)
        return _fit_relative_ridge(x, y, floor, design, penalty)

    def __call__(self, features: Sequence[GraphFeatures]) -> np.ndarray:
        x = design_matrix(features, self.design)
        if x.shape[1] != len(self.coef):
            raise PredictorError(
                f"a {self.design} linear model of {len(self.coef)} columns got {x.shape[1]}"
            )
        predicted: np.ndarray = np.maximum(
            x @ np.asarray(self.coef) + self.intercept_ms, self.floor_ms
        )
        return predicted

    def to_dict(self) -> dict[str, Any]:
        return {
            "design": self.design,
            "coef": list(self.coef),
            "intercept_ms": self.intercept_ms,
            "floor_ms": self.floor_ms,
            "penalty": self.penalty,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LinearModel:
        return cls(
            design=data["design"],
            coef=tuple(float(c) for c in data["coef"]),
            intercept_ms=float(data["intercept_ms"]),
            floor_ms=float(data["floor_ms"]),
            penalty=float(data.get("penalty", 0.0)),
        )


def _fit_relative_ridge(
    x: np.ndarray, y: np.ndarray, floor: float, design: Design, penalty: float | None
) -> LinearModel:
    """min sum(((x b + c - y) / y)^2) + penalty * |s b|^2 over standardised columns (s: their
    standard deviations; constant columns dropped), the intercept unpenalised."""
    scale = x.std(axis=0)
    keep = scale > 1e-12
    z = (x[:, keep] - x[:, keep].mean(axis=0)) / scale[keep]
    w = 1.0 / y
    a = np.column_stack([z, np.ones(len(y))]) * w[:, None]  # rows scaled: relative residuals
    t = np.ones(len(y))  # y / y
    gram = a.T @ a
    rhs = a.T @ t
    unpenalised = np.zeros(gram.shape[0])
    unpenalised[:-1] = 1.0
    base = float(np.trace(gram[:-1, :-1])) / max(1, gram.shape[0] - 1) or 1.0
    candidates = [penalty] if penalty is not None else [base * p for p in _PENALTIES]
    best: tuple[float, float, np.ndarray] | None = None
    for lam in candidates:
        try:
            inverse = np.linalg.inv(gram + lam * np.diag(unpenalised))
        except np.linalg.LinAlgError:
            continue
        beta = inverse @ rhs
        residual = t - a @ beta
        leverage = np.einsum("ij,jk,ik->i", a, inverse, a)
        loo = float(np.mean((residual / np.maximum(1.0 - leverage, 1e-6)) ** 2))
        if best is None or loo < best[0]:
            best = (loo, lam, beta)
    if best is None:
        raise PredictorError("the linear model could not be fitted (singular design)")
    _, lam, beta = best
    coef = np.zeros(x.shape[1])
    coef[keep] = beta[:-1] / scale[keep]
    intercept = float(beta[-1] - coef[keep] @ x[:, keep].mean(axis=0))
    return LinearModel(design, tuple(float(c) for c in coef), intercept, floor, float(lam))
