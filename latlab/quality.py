"""How far to trust a measurement: the median's confidence interval, the spread, the drift
within the run, what the host did meanwhile, and a verdict with the rule that gave it.

One definition for both ends: the agent's protocol stops timing when the interval is tight
enough and re-times a run whose verdict is not ``ok``; the server computes the same quality
from the samples and the host's report, and stores it with the measurement.

- The interval is distribution-free: the order statistics whose ranks bound the median with
  95 % confidence (the binomial sign-test interval, normal approximation), so the long right
  tail of latency samples does not widen it the way it widens a mean's.
- Drift: the median of the last third of the samples against the first third's, relative to
  the median of all (a device warming up or cooling down, a neighbour starting work).
- Verdicts, first rule that holds: ``throttled`` (a thermal reading over its limit, or the
  timing CPU's clock under ``min_freq_ratio`` of its maximum), ``interfered`` (other work on
  the timing CPUs, hypervisor steal, or a load over the host's CPUs when unpinned),
  ``drifting``, ``noisy`` (interval half-width over ``noisy_ci_pct``), else ``ok``. Too few
  samples to say (under ``MIN_SAMPLES``) is ``unknown``.
- Across runs, the device canary (a reference model timed between a device's jobs): a
  measurement's window is the canaries just before and after it, and its drift the one of them
  further from the median of a campaign's canaries (``canary_windows``).
"""

from __future__ import annotations

import math
import statistics
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from latlab.schemas import MeasurementQuality

__all__ = [
    "MIN_SAMPLES",
    "CanaryWindows",
    "Quality",
    "QualityRules",
    "Verdict",
    "assess",
    "canary_windows",
    "ci_halfwidth_pct",
    "drift_pct",
    "measurement_quality",
    "median_ci",
    "spread_pct",
]

#: Two-sided 95 % normal quantile.
Z95 = 1.959964
#: Fewer samples than this give no interval worth the name (and no drift).
MIN_SAMPLES = 6


class Verdict(StrEnum):
    ok = "ok"
    noisy = "noisy"
    drifting = "drifting"
    interfered = "interfered"
    throttled = "throttled"
    #: Too few samples to judge (a reported-statistics runtime, an import).
    unknown = "unknown"


#: Verdicts a re-timed run may cure (a throttled device must cool first: the thermal gate).
RETIMABLE = frozenset({Verdict.noisy, Verdict.drifting, Verdict.interfered})


@dataclass(frozen=True)
class QualityRules:
    """The thresholds of the verdicts."""

    noisy_ci_pct: float = 2.0
    drift_pct: float = 3.0
    other_busy_pct: float = 10.0
    steal_pct: float = 5.0
    min_freq_ratio: float = 0.85


@dataclass(frozen=True)
class Quality:
    verdict: Verdict
    #: The rule that gave the verdict, in words with its figures.
    rule: str
    ci_low_ms: float | None
    ci_high_ms: float | None
    #: Half the interval's width relative to the median, in %.
    ci_halfwidth_pct: float | None
    #: Coefficient of variation (sample std / mean), in %.
    cv_pct: float | None
    drift_pct: float | None


def _median_sorted(a: Sequence[float]) -> float:
    n = len(a)
    mid = n // 2
    return a[mid] if n % 2 else (a[mid - 1] + a[mid]) / 2


def median_ci(samples: Sequence[float]) -> tuple[float, float]:
    """The 95 % interval of the median: order statistics of ranks ``n/2 -+ z*sqrt(n)/2``
    (1-based, widened outward), the whole range for fewer than ``MIN_SAMPLES``."""
    return _ci_sorted(sorted(samples))


def _ci_sorted(a: Sequence[float]) -> tuple[float, float]:
    n = len(a)
    if n == 0:
        raise ValueError("median_ci needs at least one sample")
    if n < MIN_SAMPLES:
        return a[0], a[-1]
    half = Z95 * math.sqrt(n) / 2
    low_rank = max(1, math.floor(n / 2 - half))
    high_rank = min(n, math.ceil(n / 2 + 1 + half))
    return a[low_rank - 1], a[high_rank - 1]


def ci_halfwidth_pct(samples: Sequence[float]) -> float:
    """Half the median interval's width relative to the median, in % (one sort: the adaptive
    protocol calls it while it times)."""
    a = sorted(samples)
    low, high = _ci_sorted(a)
    median = _median_sorted(a)
    return 100 * (high - low) / 2 / median if median > 0 else math.inf


def drift_pct(samples: Sequence[float]) -> float | None:
    """Median of the last third minus the first third's, relative to the median of all, in %;
    None for fewer than ``MIN_SAMPLES``."""
    n = len(samples)
    if n < MIN_SAMPLES:
        return None
    third = n // 3
    first = _median_sorted(sorted(samples[:third]))
    last = _median_sorted(sorted(samples[-third:]))
    median = _median_sorted(sorted(samples))
    return 100 * (last - first) / median if median > 0 else None


def _cv_pct(samples: Sequence[float]) -> float | None:
    n = len(samples)
    if n < 2:
        return None
    mean = sum(samples) / n
    var = sum((x - mean) ** 2 for x in samples) / (n - 1)
    return 100 * math.sqrt(var) / mean if mean > 0 else None


def _host_rule(host: Mapping[str, Any], rules: QualityRules) -> tuple[Verdict, str] | None:
    """``throttled`` or ``interfered`` from the host's report (``agent.isolation.HostWatch``)."""
    thermal, limit = host.get("thermal"), host.get("thermal_limit")
    if isinstance(thermal, int | float) and isinstance(limit, int | float) and thermal > limit:
        return Verdict.throttled, f"thermal reading {thermal} over its limit {limit}"
    freq, max_freq = host.get("freq_mhz"), host.get("max_freq_mhz")
    if (
        isinstance(freq, int | float)
        and isinstance(max_freq, int | float)
        and freq < rules.min_freq_ratio * max_freq
    ):
        return Verdict.throttled, (
            f"timing CPU at {freq:.0f} MHz, under {rules.min_freq_ratio:.0%} of its "
            f"{max_freq:.0f} MHz"
        )
    other, steal = host.get("other_busy_pct"), host.get("steal_pct")
    if isinstance(other, int | float) and other > rules.other_busy_pct:
        return Verdict.interfered, (
            f"{other:.1f} % of the timing CPUs' time went to other work "
            f"(limit {rules.other_busy_pct:g} %)"
        )
    if isinstance(steal, int | float) and steal > rules.steal_pct:
        return Verdict.interfered, f"{steal:.1f} % hypervisor steal (limit {rules.steal_pct:g} %)"
    load, cpus = host.get("load_1m"), host.get("host_cpus")
    if other is None and isinstance(load, int | float) and isinstance(cpus, int) and load > cpus:
        return Verdict.interfered, f"load {load:.2f} over the host's {cpus} CPUs (unpinned)"
    return None


def assess(
    samples_ms: Sequence[float],
    host: Mapping[str, Any] | None = None,
    rules: QualityRules = QualityRules(),
) -> Quality:
    """The quality of one measurement's timed samples (in run order) and host report."""
    if len(samples_ms) < MIN_SAMPLES:
        # the host can still say (a phone that reports statistics only, and its heat)
        low_high = median_ci(samples_ms) if samples_ms else (None, None)
        verdict, rule = _host_rule(host or {}, rules) or (
            Verdict.unknown,
            f"{len(samples_ms)} samples: at least {MIN_SAMPLES} are needed to judge",
        )
        return Quality(
            verdict,
            rule,
            low_high[0],
            low_high[1],
            None,
            _cv_pct(samples_ms),
            None,
        )
    low, high = median_ci(samples_ms)
    half = ci_halfwidth_pct(samples_ms)
    drift = drift_pct(samples_ms)
    found = _host_rule(host or {}, rules)
    if found is None and drift is not None and abs(drift) > rules.drift_pct:
        found = (
            Verdict.drifting,
            (
                f"the last third's median is {drift:+.1f} % from the first third's "
                f"(limit {rules.drift_pct:g} %)"
            ),
        )
    if found is None and half > rules.noisy_ci_pct:
        found = (
            Verdict.noisy,
            (f"the median's 95 % interval is ±{half:.2f} % (limit ±{rules.noisy_ci_pct:g} %)"),
        )
    verdict, rule = found or (
        Verdict.ok,
        f"interval ±{half:.2f} %, drift {drift:+.1f} %, host quiet",
    )
    return Quality(
        verdict,
        rule,
        low,
        high,
        round(half, 4),
        None if (cv := _cv_pct(samples_ms)) is None else round(cv, 4),
        None if drift is None else round(drift, 4),
    )


def measurement_quality(quality: Quality) -> MeasurementQuality:
    """The quality as a measurement stores and answers it."""
    return MeasurementQuality(
        verdict=quality.verdict.value,
        verdict_rule=quality.rule[:300],
        ci_low_ms=quality.ci_low_ms,
        ci_high_ms=quality.ci_high_ms,
        ci_halfwidth_pct=quality.ci_halfwidth_pct,
        cv_pct=quality.cv_pct,
        drift_pct=quality.drift_pct,
    )


def spread_pct(values: Sequence[float]) -> float:
    """(max - min) / median of ``values``, %: how far a series of medians moved."""
    return 100.0 * (max(values) - min(values)) / statistics.median(values)


@dataclass(frozen=True)
class CanaryWindows:
    #: The median of the canaries that bound the measurements (ms); None without canaries.
    reference_ms: float | None
    #: Per measurement: its window's drift, signed %, relative to the reference.
    drift_pct: list[float | None]
    #: Per measurement: the device's speed then against the reference, from the canary
    #: interpolated linearly in time between the one before and the one after it (one side
    #: where there is one): canary(t) / reference. A measurement divided by it is the latency
    #: at the reference speed, if the device's speed changes every model alike.
    scale: list[float | None]
    #: (max - min) / reference of those canaries, %.
    spread_pct: float | None
    #: How many canaries bound the measurements.
    n: int


def canary_windows(canaries: Sequence[tuple[float, float]], at: Sequence[float]) -> CanaryWindows:
    """Each measurement time in ``at`` (seconds) against the device's canaries (seconds, median
    ms; sorted by time). The canaries that bound them, from the last one at or before the first
    measurement to the first one after the last, give the reference (their median); a
    measurement's drift is that of the canary just before or just after it, whichever is
    further from the reference (one side where there is one)."""
    if not canaries or not at:
        return CanaryWindows(None, [None] * len(at), [None] * len(at), None, 0)
    times = [t for t, _ in canaries]
    lo = max(0, bisect_right(times, min(at)) - 1)
    hi = min(len(canaries), bisect_right(times, max(at)) + 1)
    bounding = [ms for _, ms in canaries[lo:hi]]
    reference = statistics.median(bounding)

    def pct(ms: float) -> float:
        return 100.0 * (ms / reference - 1.0)

    drift: list[float | None] = []
    scale: list[float | None] = []
    for t in at:
        i = bisect_right(times, t)
        near = [j for j in (i - 1, i) if 0 <= j < len(canaries)]
        drift.append(max((pct(canaries[j][1]) for j in near), key=abs))
        if len(near) == 2:
            (t0, c0), (t1, c1) = canaries[near[0]], canaries[near[1]]
            w = (t - t0) / (t1 - t0) if t1 > t0 else 0.0
            scale.append((c0 + w * (c1 - c0)) / reference)
        else:
            scale.append(canaries[near[0]][1] / reference)
    return CanaryWindows(reference, drift, scale, spread_pct(bounding), len(bounding))
