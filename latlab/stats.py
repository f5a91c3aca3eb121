"""Latency statistics over raw samples: the one definition used everywhere."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from latlab.schemas import LatencyStats

__all__ = ["latency_stats", "spearman"]


def latency_stats(samples_ms: Sequence[float]) -> LatencyStats:
    """Median (the headline), mean, sample std, min, max, p10/p90/p99 and IQR of samples.

    Percentiles interpolate linearly between order statistics (numpy's default).
    """
    if len(samples_ms) == 0:
        raise ValueError("latency_stats needs at least one sample")
    a = np.asarray(samples_ms, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError("latency samples must be finite numbers")
    p10, p25, p50, p75, p90, p99 = np.percentile(a, [10, 25, 50, 75, 90, 99])
    return LatencyStats(
        n=int(a.size),
        median_ms=float(p50),
        mean_ms=float(a.mean()),
        std_ms=float(a.std(ddof=1)) if a.size > 1 else 0.0,
        min_ms=float(a.min()),
        max_ms=float(a.max()),
        p10_ms=float(p10),
        p90_ms=float(p90),
        p99_ms=float(p99),
        iqr_ms=float(p75 - p25),
    )


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
