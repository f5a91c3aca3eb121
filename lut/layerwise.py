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
from dataclasses import dataclass

import numpy as np

from latlab.lut.errors import LutError
from latlab.lut.fusion import fuse
from latlab.lut.predict import EstimatedKernel, calibrated_ms, kernel_latencies_us
from latlab.lut.table import LookupTable
from latlab.runtimes import rules_for
from latlab.spaces.base import Layerwise

__all__ = ["Segment", "SegmentTable"]


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
        return cls(table, found)

    def answer(
        self, parts: Sequence[tuple[Hashable, Hashable]]
    ) -> tuple[float, int, list[EstimatedKernel]] | None:
        """(latency ms, kernels, estimated kernels) of an arch from its segments; None if one
        of them is not in the table."""
        total_us, kernels = 0.0, 0
        estimated: list[EstimatedKernel] = []
        get = self.segments.get
        for part in parts:  # a search job's batch: every microsecond per arch counts here
            segment = get(part)
            if segment is None:
                return None
            total_us += segment.sum_us
            kernels += segment.kernels
            if segment.estimated:
                estimated.extend(segment.estimated)
        return calibrated_ms(self.table, total_us / 1e3, kernels), kernels, estimated
