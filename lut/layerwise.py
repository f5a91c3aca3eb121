"""A LUT's answers for a layer-wise space without graphs: the kernel sum of an arch is the sum of
its segments' sums (``spaces.base.Layerwise``: a fixed part plus one segment per layer or block,
each depending only on its slot and the choice made there), so each (slot, choice) is summed
once, from the space's covering archs, and an arch is answered from those sums.

Built once per LUT and space (the covering archs' graphs: 9-10 for FBNet and ProxylessNAS, 225
for OFA, one per resolution and block choice), it answers as the graph path does (a test
compares them arch by arch): the same entries and fallback estimates, the same kernel count,
the same calibration. A kernel that spans two segments would break the premise: building the
table checks that every kernel's nodes lie in one segment and that a (slot, choice) met in two
covering archs sums the same in both, and refuses the space otherwise.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np

from latlab.lut.errors import LutError
from latlab.lut.fusion import fuse
from latlab.lut.predict import EstimatedKernel, calibrated_ms, kernel_latencies_us
from latlab.lut.table import LookupTable
from latlab.runtimes import rules_for
from latlab.spaces.base import Layerwise

__all__ = ["LACKING", "PAD", "Segment", "SegmentTable"]

#: Segment numbers past the space's own: a (slot, choice) the space does not number, and the
#: padding of a row (a shorter arch).
LACKING, PAD = -2, -1


@dataclass(frozen=True)
class Segment:
    """What one (slot, choice) adds: its kernels' summed latency, how many, which estimated."""

    sum_us: float
    kernels: int
    estimated: tuple[EstimatedKernel, ...]


@dataclass(frozen=True)
class SegmentTable:
    table: LookupTable
    segments: dict[tuple[Hashable, Hashable], Segment]
    #: The space's numbering of its (slot, choice) pairs (``Layerwise.segment_keys``).
    keys: list[tuple[Hashable, Hashable]]
    #: The sums as arrays by number, then LACKING (NaN: a pair the sums lack) and PAD (0).
    _ids: dict[tuple[Hashable, Hashable], int] = field(init=False, repr=False, compare=False)
    _sum_us: np.ndarray = field(init=False, repr=False, compare=False)
    _kernels: np.ndarray = field(init=False, repr=False, compare=False)
    #: The estimated kernels of the numbers that have any.
    _estimated: dict[int, tuple[EstimatedKernel, ...]] = field(
        init=False, repr=False, compare=False
    )

    @classmethod
    def build(cls, table: LookupTable, space: Layerwise[object]) -> SegmentTable:
        rules = rules_for(table.rules)
        found: dict[tuple[Hashable, Hashable], Segment] = {}
        for arch in space.covering():
            graph = space.graph(arch)
            choice = dict(space.segments(arch))
            kernels = fuse(graph, rules)
            times, estimated = kernel_latencies_us(table, kernels)
            estimated_by_node = {e.nodes: e for e in estimated}
            sums: dict[Hashable, list[float]] = {slot: [] for slot in choice}
            marked: dict[Hashable, list[EstimatedKernel]] = {slot: [] for slot in choice}
            timed = iter(times)
            for kernel in kernels:
                if not kernel.costs_time:
                    continue
                slots = {space.segment_of(arch, n) for n in kernel.nodes}
                if len(slots) != 1:
                    raise LutError(
                        f"kernel {kernel.op_type} spans segments {sorted(map(str, slots))}: "
                        "this space's archs are answered through their graphs"
                    )
                [slot] = slots
                sums[slot].append(next(timed))
                if kernel.nodes in estimated_by_node:
                    marked[slot].append(estimated_by_node[kernel.nodes])
            for slot, values in sums.items():
                segment = Segment(float(sum(values)), len(values), tuple(marked[slot]))
                known = found.setdefault((slot, choice[slot]), segment)
                if not np.isclose(known.sum_us, segment.sum_us, rtol=1e-9) or (
                    known.kernels != segment.kernels
                ):
                    raise LutError(
                        f"segment {slot} with {choice[slot]} sums differently in two archs: "
                        "its kernels depend on its neighbours"
                    )
        return cls(table, found, space.segment_keys())

    def __post_init__(self) -> None:
        object.__setattr__(self, "_ids", {key: i for i, key in enumerate(self.keys)})
        found = [self.segments.get(key) for key in self.keys]
        sums = [s.sum_us if s is not None else np.nan for s in found] + [np.nan, 0.0]
        kernels = [s.kernels if s is not None else 0 for s in found] + [0, 0]
        object.__setattr__(self, "_sum_us", np.array(sums, dtype=np.float64))
        object.__setattr__(self, "_kernels", np.array(kernels, dtype=np.float64))
        marked = {i: s.estimated for i, s in enumerate(found) if s is not None and s.estimated}
        object.__setattr__(self, "_estimated", marked)

    def numbers(
        self, archs: Sequence[Sequence[tuple[Hashable, Hashable]]], width: int
    ) -> np.ndarray:
        """Archs' segments (``Layerwise.segments``) as numbers, a row of ``width`` per arch
        padded with PAD; a pair the space does not number is LACKING."""
        get = self._ids.get
        rows = [[get(part, LACKING) for part in parts] for parts in archs]
        return np.array([row + [PAD] * (width - len(row)) for row in rows], dtype=np.int64)

    def answer(
        self, numbers: np.ndarray
    ) -> tuple[np.ndarray, list[int], list[list[EstimatedKernel]], list[int]]:
        """Per arch (a row of its segments' numbers): latency (ms), kernels summed and the
        estimated ones; and the rows with a segment the sums lack (answered NaN here)."""
        n, width = numbers.shape
        # bincount adds each arch's terms in order, as a running sum would: the same floats
        owner = np.repeat(np.arange(n), width)
        total_us = np.bincount(owner, weights=self._sum_us[numbers.ravel()], minlength=n)
        kernels = np.bincount(owner, weights=self._kernels[numbers.ravel()], minlength=n)
        latency_ms = calibrated_ms(self.table, total_us / 1e3, kernels)
        missing = np.flatnonzero(np.isnan(total_us)).tolist()
        estimated: list[list[EstimatedKernel]] = [[] for _ in range(n)]
        if self._estimated:
            for row, found in zip(numbers.tolist(), estimated, strict=True):
                for number in row:
                    found.extend(self._estimated.get(number, ()))
        return latency_ms, kernels.astype(np.int64).tolist(), estimated, missing
