"""How well predicted latencies match measured ones: the one definition of each metric.

Accuracy within a tolerance follows nn-Meter: the share of items with
``|predicted - true| / true <= tol`` (Eagle/BRP-NAS count the truth inside ±tol of the
prediction instead; latlab says which it uses wherever it prints one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["RegressionMetrics", "kendall", "regression_metrics", "spearman"]


def _ranks(values: Sequence[float]) -> np.ndarray:
    """Ranks 0..n-1, ties sharing their mean rank."""
    a = np.asarray(values, dtype=np.float64)
    order = np.argsort(a, kind="stable")
    ranks = np.empty(a.size, dtype=np.float64)
    ranks[order] = np.arange(a.size, dtype=np.float64)
    _, inverse, counts = np.unique(a, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return np.asarray(sums[inverse] / counts[inverse])


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (Pearson's r of the tie-averaged ranks); nan if either
    side is constant or there are fewer than two pairs."""
    if len(x) != len(y):
        raise ValueError("spearman needs two sequences of the same length")
    if len(x) < 2:
        return float("nan")
    rx, ry = _ranks(x), _ranks(y)
    rx -= rx.mean()
    ry -= ry.mean()
    denominator = float(np.sqrt((rx * rx).sum() * (ry * ry).sum()))
    return float((rx * ry).sum() / denominator) if denominator else float("nan")


def kendall(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b over all pairs (O(n^2): fine for held-out sets of thousands)."""
    if len(x) != len(y):
        raise ValueError("kendall needs two sequences of the same length")
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.size < 2:
        return float("nan")
    concordant = discordant = ties_a = ties_b = 0.0
    for i in range(a.size - 1):
        da = np.sign(a[i + 1 :] - a[i])
        db = np.sign(b[i + 1 :] - b[i])
        product = da * db
        concordant += float(np.sum(product > 0))
        discordant += float(np.sum(product < 0))
        ties_a += float(np.sum((da == 0) & (db != 0)))
        ties_b += float(np.sum((db == 0) & (da != 0)))
    denominator = np.sqrt((concordant + discordant + ties_a) * (concordant + discordant + ties_b))
    return float((concordant - discordant) / denominator) if denominator else float("nan")


@dataclass(frozen=True)
class RegressionMetrics:
    n: int
    rmse_ms: float
    mape: float  # a fraction: 0.05 is 5 %
    within_1pct: float
    within_5pct: float
    within_10pct: float
    spearman: float
    kendall: float


def regression_metrics(
    predicted_ms: Sequence[float], true_ms: Sequence[float]
) -> RegressionMetrics:
    p, t = np.asarray(predicted_ms, dtype=np.float64), np.asarray(true_ms, dtype=np.float64)
    if p.shape != t.shape or p.size == 0:
        raise ValueError("need as many predictions as true values, at least one")
    if np.any(t <= 0):
        raise ValueError("true latencies must be positive")
    rel = np.abs(p - t) / t
    return RegressionMetrics(
        n=int(p.size),
        rmse_ms=float(np.sqrt(np.mean((p - t) ** 2))),
        mape=float(np.mean(rel)),
        within_1pct=float(np.mean(rel <= 0.01)),
        within_5pct=float(np.mean(rel <= 0.05)),
        within_10pct=float(np.mean(rel <= 0.10)),
        spearman=spearman(p.tolist(), t.tolist()),
        kendall=kendall(p.tolist(), t.tolist()),
    )
