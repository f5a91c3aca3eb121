"""Latency statistics over raw samples: the one definition used everywhere."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from latlab.schemas import LatencyStats, ReportedStats

__all__ = ["REPORTED_HEADLINE", "latency_stats", "reported_latency_stats"]

#: The provenance entry of a measurement whose headline is a runtime's reported mean.
REPORTED_HEADLINE = "mean"


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


def reported_latency_stats(reported: ReportedStats) -> LatencyStats:
    """The statistics a runtime reported (no samples): the mean is the headline (``median_ms``,
    named ``REPORTED_HEADLINE`` in the measurement's provenance), no percentiles."""
    return LatencyStats(
        n=reported.count,
        median_ms=reported.mean_ms,
        mean_ms=reported.mean_ms,
        std_ms=reported.std_ms,
        min_ms=reported.min_ms,
        max_ms=reported.max_ms,
    )
