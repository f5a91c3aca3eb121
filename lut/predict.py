"""Predicting a model's latency from a LUT: the sum of its kernels' entries, calibrated.

Works from an OpGraph, so it serves search-space archs and uploaded ONNX models alike. A kernel
whose key is missing is estimated by its op type's fallback regression and listed in the answer;
a kernel with neither is a ``MissingEntry`` error, never a silent zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from latlab.graph import OpGraph
from latlab.lut.errors import MissingEntry
from latlab.lut.fusion import Kernel, fuse
from latlab.lut.table import LookupTable
from latlab.runtimes import rules_for

__all__ = ["EstimatedKernel", "LutPrediction", "calibrated_ms", "kernel_latencies_us", "predict"]


@dataclass(frozen=True)
class EstimatedKernel:
    """A kernel the table has no entry for, estimated from its FLOPs and bytes moved."""

    nodes: tuple[str, ...]
    op_type: str
    key: str
    latency_us: float


@dataclass(frozen=True)
class LutPrediction:
    latency_ms: float
    #: Kernels that cost time (duplicates the runtime merges and free ops are not counted).
    kernels: int
    #: The plain sum of their entries and estimates, before calibration.
    table_sum_ms: float
    estimated: tuple[EstimatedKernel, ...]


def kernel_latencies_us(
    table: LookupTable, kernels: Sequence[Kernel]
) -> tuple[list[float], list[EstimatedKernel]]:
    """The latency of every kernel that costs time, and which of them were estimated."""
    times: list[float] = []
    estimated: list[EstimatedKernel] = []
    for kernel in kernels:
        if not kernel.costs_time:
            continue
        entry = table.entries.get(kernel.key)
        if entry is not None:
            times.append(entry.median_us)
            continue
        fit = table.fallback.get(kernel.op_type)
        if fit is None:
            known = ", ".join(sorted(table.fallback)) or "none"
            nodes = ", ".join(kernel.nodes[:3]) + (", ..." if len(kernel.nodes) > 3 else "")
            raise MissingEntry(
                f"kernel {kernel.op_type} (nodes {nodes}) has no entry in this LUT, and the LUT "
                f"has no fallback for {kernel.op_type} (it has: {known}). Build a LUT that "
                "covers it: `latlab lut build --device DEVICE --model MODEL_ID` times "
                "micro-models of that model's own kernels"
            )
        us = fit.estimate_us(kernel.cost.flops, kernel.cost.bytes_moved)
        times.append(us)
        estimated.append(EstimatedKernel(kernel.nodes, kernel.op_type, kernel.key, us))
    return times, estimated


def calibrated_ms(table: LookupTable, total_ms: np.ndarray, kernels: np.ndarray) -> np.ndarray:
    """The models' latency from their kernels' summed entries (ms) and their number, element
    by element."""
    cal = table.calibration
    latency_ms = cal.scale * total_ms - cal.per_kernel_us * kernels / 1e3 + cal.constant_ms
    return np.maximum(latency_ms, 0.0)


def predict(table: LookupTable, graph: OpGraph) -> LutPrediction:
    kernels = fuse(graph, rules_for(table.rules))
    times, estimated = kernel_latencies_us(table, kernels)
    total_ms = sum(times) / 1e3
    return LutPrediction(
        latency_ms=float(calibrated_ms(table, np.array(total_ms), np.array(len(times)))),
        kernels=len(times),
        table_sum_ms=total_ms,
        estimated=tuple(estimated),
    )
