"""How well predicted latencies match measured ones: the one definition of each metric.

Accuracy within a tolerance follows nn-Meter: the share of items with
``|predicted - true| / true <= tol`` (Eagle/BRP-NAS count the truth inside ±tol of the
prediction instead; latlab says which it uses wherever it prints one).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

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


#: Rows compared at once when counting discordant pairs (a block x block boolean matrix).
_BLOCK = 1024


def _inversions(values: np.ndarray) -> int:
    """Pairs i < j with values[i] > values[j]: block by block, each block against the sorted
    values before it (searchsorted) and against itself (a triangle of comparisons)."""
    total = 0
    before = np.empty(0, dtype=values.dtype)
    for start in range(0, values.size, _BLOCK):
        block = values[start : start + _BLOCK]
        total += int((before.size - np.searchsorted(before, block, side="right")).sum())
        total += int(np.triu(block[:, None] > block[None, :], 1).sum())
        before = np.sort(np.concatenate([before, block]))
    return total


def _tied_pairs(*columns: np.ndarray) -> int:
    """Pairs equal in every column."""
    _, counts = np.unique(np.stack(columns, axis=1), axis=0, return_counts=True)
    return int((counts * (counts - 1) // 2).sum())


def kendall(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (Knight's algorithm, O(n log n) in numpy: the 15,625 archs of a space
    in milliseconds); nan if either side is constant or there are fewer than two pairs."""
    if len(x) != len(y):
        raise ValueError("kendall needs two sequences of the same length")
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.size < 2:
        return float("nan")
    order = np.lexsort((b, a))  # by x, ties in x by y: no discordant pair among x-ties
    a, b = a[order], b[order]
    pairs = a.size * (a.size - 1) // 2
    ties_x, ties_y, ties_xy = _tied_pairs(a), _tied_pairs(b), _tied_pairs(a, b)
    discordant = _inversions(b)
    denominator = np.sqrt(float(pairs - ties_x) * float(pairs - ties_y))
    if not denominator:
        return float("nan")
    concordant_minus_discordant = pairs - ties_x - ties_y + ties_xy - 2 * discordant
    return float(concordant_minus_discordant / denominator)


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

    def to_dict(self) -> dict[str, float | int | None]:
        """JSON-safe: a non-finite figure (rho of one item) is None."""
        return {
            k: (v if not isinstance(v, float) or math.isfinite(v) else None)
            for k, v in asdict(self).items()
        }


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
