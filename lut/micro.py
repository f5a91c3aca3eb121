"""Single-kernel micro-models (LETI / ChamNet / FBNet): every unique kernel of a set of graphs
cut out into a graph of its own, with the exact shapes and attributes it has in the network,
so that timing it on a device fills that kernel's LUT entry."""

from __future__ import annotations

from collections.abc import Iterable

from latlab.graph import OpGraph
from latlab.lut.fusion import Kernel, fuse
from latlab.runtimes import FusionRules

__all__ = ["kernel_graph", "unique_kernels"]


def kernel_graph(graph: OpGraph, kernel: Kernel) -> OpGraph:
    """The kernel's nodes as a graph: its activation inputs become graph inputs, the last
    node's outputs the graph's outputs; weights keep their names (and so their seeded values)."""
    names = set(kernel.nodes)
    nodes = tuple(n for n in graph.nodes if n.name in names)
    produced = {t for n in nodes for t in n.outputs}
    inputs: list[str] = []
    for node in nodes:
        for t in node.inputs:
            if t and t not in produced and t not in graph.weights and t not in inputs:
                inputs.append(t)
    used = set(inputs) | produced | {t for n in nodes for t in n.inputs if t}
    return OpGraph(
        name=f"kernel-{kernel.op_type}",
        inputs=tuple(inputs),
        outputs=nodes[-1].outputs,
        nodes=nodes,
        tensors={t: graph.tensors[t] for t in sorted(used)},
        weights=frozenset(t for t in used if t in graph.weights),
    )


def unique_kernels(
    graphs: Iterable[OpGraph], rules: FusionRules
) -> dict[str, tuple[Kernel, OpGraph]]:
    """LUT key -> (kernel, its micro-model) for every kernel that costs time, first occurrence
    kept."""
    out: dict[str, tuple[Kernel, OpGraph]] = {}
    for graph in graphs:
        for kernel in fuse(graph, rules):
            if kernel.costs_time and kernel.key not in out:
                out[kernel.key] = (kernel, kernel_graph(graph, kernel))
    return out
