"""Latency statistics over raw samples: the one definition used everywhere."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from latlab.schemas import LatencyStats

__all__ = ["latency_stats"]


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
