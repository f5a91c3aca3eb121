"""Building a LUT from measurements: per-op profiles of whole models, or micro-model timings;
then the per-op-type fallback and the calibration on whole models.

Attribution of profiled kernels: the runtime's profiler lists the kernels it ran, each with the
source graph nodes it computes (agent/ort_profile.py). Each row's time goes to the fused kernel
(lut.fusion) that holds the row's last source node in graph order; rows with no source node (a
layout conversion the runtime inserted) belong to no kernel and end up in the calibration's
constant. A kernel instance no row lands on (the runtime folded it elsewhere) counts as zero.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from latlab.graph import OpGraph
from latlab.lut.errors import LutError, MissingEntry
from latlab.lut.fusion import Kernel, fuse
from latlab.lut.predict import kernel_latencies_us
from latlab.lut.table import Calibration, LookupTable, LutEntry, LutSource, TypeFit
from latlab.runtimes import FusionRules, rules_for

__all__ = [
    "MicroTiming",
    "ProfiledModel",
    "attribute",
    "build_from_micro",
    "build_from_profiles",
    "calibrate",
    "fit_fallback",
]

#: A fallback regression on [1, MFLOPs, MB] needs this many entries of the type; with fewer
#: (but at least one), the estimate scales with bytes moved.
MIN_REGRESSION_ENTRIES = 3


@dataclass(frozen=True)
class ProfiledModel:
    graph: OpGraph
    median_ms: float
    #: (dur_us, source node names) per kernel row of the runtime's profiler.
    ops: Sequence[tuple[float, Sequence[str]]]


@dataclass(frozen=True)
class MicroTiming:
    """A micro-model's end-to-end timing, and what the kernel it was cut from costs."""

    op_type: str
    flops: int
    bytes_moved: int
    median_ms: float
    iqr_ms: float
    n: int


def attribute(
    graph: OpGraph, kernels: Sequence[Kernel], ops: Sequence[tuple[float, Sequence[str]]]
) -> list[float]:
    """Profiled time (us) per kernel of ``kernels`` (zero for those that cost no time)."""
    owner: dict[str, int] = {}
    for i, kernel in enumerate(kernels):
        target = kernel.duplicate_of if kernel.duplicate_of is not None else i
        for node in kernel.nodes:
            owner[node] = target
    order = {node.name: i for i, node in enumerate(graph.nodes)}
    times = [0.0] * len(kernels)
    for dur_us, sources in ops:
        known = [s for s in sources if s in owner]
        if not known:
            if sources:
                raise LutError(f"profiled nodes {list(sources)[:3]} are not in the graph")
            continue  # a layout conversion: calibration constant
        times[owner[max(known, key=order.__getitem__)]] += dur_us
    return times


def _entry(key: str, kernel: Kernel, values_us: Sequence[float]) -> LutEntry:
    a = np.asarray(values_us, dtype=np.float64)
    q25, q50, q75 = np.percentile(a, [25, 50, 75])
    return LutEntry(
        key=key,
        op_type=kernel.op_type,
        median_us=float(q50),
        iqr_us=float(q75 - q25),
        n=int(a.size),
        flops=kernel.cost.flops,
        bytes_moved=kernel.cost.bytes_moved,
    )


def build_from_profiles(
    models: Sequence[ProfiledModel], rules: FusionRules, meta: Mapping[str, Any] | None = None
) -> LookupTable:
    """Entries = median attributed time per kernel key over every instance in every model;
    calibrated on the same models' end-to-end medians."""
    if not models:
        raise LutError("no profiled measurements to build a LUT from")
    samples: dict[str, list[float]] = defaultdict(list)
    examples: dict[str, Kernel] = {}
    for model in models:
        kernels = fuse(model.graph, rules)
        for kernel, us in zip(kernels, attribute(model.graph, kernels, model.ops), strict=True):
            if kernel.costs_time:
                samples[kernel.key].append(us)
                examples.setdefault(kernel.key, kernel)
    entries = {key: _entry(key, examples[key], values) for key, values in samples.items()}
    table = LookupTable(
        rules=rules.name,
        source=LutSource.measured_ops,
        entries=entries,
        fallback=fit_fallback(entries),
        meta=dict(meta or {}),
    )
    return calibrate(table, [(m.graph, m.median_ms) for m in models])


def build_from_micro(
    timings: Mapping[str, MicroTiming],
    rules: FusionRules,
    calibration_models: Sequence[tuple[OpGraph, float]],
    meta: Mapping[str, Any] | None = None,
) -> LookupTable:
    """Entries = each micro-model's end-to-end median; calibrated on whole models measured on
    the same device (uncalibrated, and saying so in ``calibration.n_models``, without any)."""
    if not timings:
        raise LutError("no micro-model timings to build a LUT from")
    entries = {
        key: LutEntry(
            key=key,
            op_type=t.op_type,
            median_us=t.median_ms * 1e3,
            iqr_us=t.iqr_ms * 1e3,
            n=t.n,
            flops=t.flops,
            bytes_moved=t.bytes_moved,
        )
        for key, t in timings.items()
    }
    table = LookupTable(
        rules=rules.name,
        source=LutSource.micro_models,
        entries=entries,
        fallback=fit_fallback(entries),
        meta=dict(meta or {}),
    )
    return calibrate(table, calibration_models)


def fit_fallback(entries: Mapping[str, LutEntry]) -> dict[str, TypeFit]:
    """Per op type: least squares of median_us on [1, MFLOPs, MB] over its entries (with fewer
    than ``MIN_REGRESSION_ENTRIES``: proportional to bytes moved)."""
    by_type: dict[str, list[LutEntry]] = defaultdict(list)
    for entry in entries.values():
        by_type[entry.op_type].append(entry)
    fits = {}
    for op_type, group in sorted(by_type.items()):
        y = np.array([e.median_us for e in group])
        mflops = np.array([e.flops / 1e6 for e in group])
        mb = np.array([e.bytes_moved / 1e6 for e in group])
        if len(group) >= MIN_REGRESSION_ENTRIES:
            design = np.column_stack([np.ones_like(y), mflops, mb])
            (intercept, per_mflop, per_mb), *_ = np.linalg.lstsq(design, y, rcond=None)
        else:
            intercept, per_mflop = 0.0, 0.0
            per_mb = float(np.median(y / np.maximum(mb, 1e-9)))
        fits[op_type] = TypeFit(
            op_type=op_type,
            intercept_us=float(intercept),
            us_per_mflop=float(per_mflop),
            us_per_mb=float(per_mb),
            n=len(group),
        )
    return fits


def calibrate(table: LookupTable, models: Sequence[tuple[OpGraph, float]]) -> LookupTable:
    """Fit ``scale``, ``per_kernel_us`` and ``constant_ms`` so that measured = scale * sum(entries)
    - per_kernel * kernels + constant, by least squares on the *relative* error (each model
    weighted by 1 / its latency): the figure that matters is relative, and timing noise grows
    with the latency. The scale is what a kernel pays inside a network beyond its table entry
    (activations that left the cache between kernels): 1.08 (measured ops) and 1.16 (micro-models)
    on NB201 here. Fewer than 3 models (or kernel counts that do not vary) fit per-kernel and
    constant with the scale at 1; one model fits the constant alone; none leaves it all at
    zero. Models with a kernel the table cannot price are left out of the fit."""
    rules = rules_for(table.rules)
    sums_ms, counts, measured = [], [], []
    for graph, median_ms in models:
        try:
            times, _ = kernel_latencies_us(table, fuse(graph, rules))
        except MissingEntry:
            continue
        sums_ms.append(sum(times) / 1e3)
        counts.append(len(times))
        measured.append(median_ms)
    if not measured:
        return replace(table, calibration=Calibration())
    s, k, y = np.array(sums_ms), np.array(counts, dtype=np.float64), np.array(measured)
    scale, per_kernel_us, constant = 1.0, 0.0, float(np.mean(y - s))
    if len(y) >= 2 and np.ptp(k) > 0:
        w = 1.0 / y
        (slope, constant), *_ = np.linalg.lstsq(
            np.column_stack([k, np.ones_like(k)]) * w[:, None], (y - s) * w, rcond=None
        )
        per_kernel_us = -float(slope) * 1e3
        if len(y) >= 3 and np.ptp(s) > 0:
            (fit_scale, slope, fit_constant), *_ = np.linalg.lstsq(
                np.column_stack([s, k, np.ones_like(k)]) * w[:, None], y * w, rcond=None
            )
            if fit_scale > 0:  # a non-positive scale is a degenerate sample, not a device
                scale, per_kernel_us, constant = (
                    float(fit_scale),
                    -float(slope) * 1e3,
                    float(fit_constant),
                )
    predicted = scale * s - per_kernel_us * k / 1e3 + constant
    rel = np.abs(predicted - y) / y
    calibration = Calibration(
        scale=scale,
        per_kernel_us=per_kernel_us,
        constant_ms=float(constant),
        n_models=len(y),
        rmse_ms=float(np.sqrt(np.mean((predicted - y) ** 2))),
        within_10pct=float(np.mean(rel <= 0.10)),
    )
    return replace(table, calibration=calibration)
