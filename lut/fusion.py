"""What a runtime actually executes: an OpGraph's nodes grouped into kernels by per-runtime
fusion rules, each kernel with a LUT key.

nn-Meter's central finding: per-op latency sums are accurate only at the level of the kernels
the runtime runs (Conv+BN+ReLU is one kernel, not three). Rules are data, not code, and belong to
the runtime (``RuntimeSpec.fusion``, ``latlab.runtimes.rules_for``):

- ``chains``: op-type sequences fused into one kernel when each op is the only consumer of the
  previous one's output (longest chain first), e.g. Conv -> BatchNormalization -> Relu;
- ``merge_duplicates``: the runtime computes an op once when another op of the same type reads
  the same inputs with the same attributes (common-subexpression elimination): the duplicate is
  a kernel with no cost of its own (NB201 applies one ReLU per edge to the same node);
- ``free``: ops the runtime removes or that only relabel memory (Identity, Dropout).

A kernel's key is its op types joined by ``+`` and the op key (latlab.opkey) of its first node,
which fixes every shape of the chain: ``Conv+BatchNormalization+Relu|in=1x16x32x32|...``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from latlab.graph import OpGraph
from latlab.opkey import ZERO, OpCost, op_cost, op_key
from latlab.runtimes import FusionRules

__all__ = ["DUPLICATE", "Kernel", "fuse"]

DUPLICATE = "duplicate"


@dataclass(frozen=True)
class Kernel:
    """One kernel the runtime runs: the graph nodes it computes and its LUT key."""

    nodes: tuple[str, ...]
    op_type: str  # the chain, e.g. "Conv+BatchNormalization+Relu"
    key: str
    cost: OpCost  # summed over its nodes (the fallback regression's features)
    #: Index of the kernel this one duplicates (it costs nothing of its own), or None.
    duplicate_of: int | None = None
    free: bool = False

    @property
    def costs_time(self) -> bool:
        return self.duplicate_of is None and not self.free


def fuse(graph: OpGraph, rules: FusionRules) -> list[Kernel]:
    """The graph's kernels in execution order; every node is in exactly one kernel.

    As the runtimes do, duplicates are merged first (so two identical ReLUs on one tensor
    leave one consumer, which a conv before them may then absorb), then chains are fused.
    """
    duplicate_of, alias = _duplicates(graph) if rules.merge_duplicates else ({}, {})
    consumers: dict[str, list[int]] = defaultdict(list)
    for i, node in enumerate(graph.nodes):
        if i not in duplicate_of:
            for t in node.inputs:
                consumers[alias.get(t, t)].append(i)
    outputs = {alias.get(t, t) for t in graph.outputs}
    taken = [False] * len(graph.nodes)
    kernel_of: dict[int, int] = {}
    kernels: list[Kernel] = []
    for i, node in enumerate(graph.nodes):
        if taken[i]:
            continue
        if i in duplicate_of:
            chain = [i]
        else:
            chain = _longest_chain(graph, i, rules, consumers, outputs, taken)
        for j in chain:
            taken[j] = True
            kernel_of[j] = len(kernels)
        nodes = [graph.nodes[j] for j in chain]
        names = tuple(n.name for n in nodes)
        op_type = "+".join(n.op_type for n in nodes)
        cost = sum((op_cost(graph, n) for n in nodes), ZERO)
        if i in duplicate_of:
            original = kernel_of[duplicate_of[i]]
            kernels.append(Kernel(names, op_type, DUPLICATE, cost, duplicate_of=original))
        elif len(nodes) == 1 and node.op_type in rules.free:
            kernels.append(Kernel(names, op_type, f"{op_type}|free", cost, free=True))
        else:
            kernels.append(Kernel(names, op_type, f"{op_type}|{op_key(graph, node)}", cost))
    return kernels


def _duplicates(graph: OpGraph) -> tuple[dict[int, int], dict[str, str]]:
    """Nodes that compute what an earlier node computes (same op, same inputs after merging,
    same attributes) -> that node; and each duplicate's outputs -> the original's."""
    first: dict[tuple[object, ...], int] = {}
    duplicate_of: dict[int, int] = {}
    alias: dict[str, str] = {}
    for i, node in enumerate(graph.nodes):
        signature = (node.op_type, tuple(alias.get(t, t) for t in node.inputs), node.attrs)
        if signature in first:
            original = first[signature]
            duplicate_of[i] = original
            alias.update(zip(node.outputs, graph.nodes[original].outputs, strict=True))
        else:
            first[signature] = i
    return duplicate_of, alias


def _longest_chain(
    graph: OpGraph,
    start: int,
    rules: FusionRules,
    consumers: dict[str, list[int]],
    outputs: set[str],
    taken: list[bool],
) -> list[int]:
    """Node indices of the longest rule chain starting at ``start`` (just ``[start]`` if none):
    each next op is the only consumer of the previous op's only output, which is not a graph
    output, and is not yet in a kernel."""
    for chain in rules.chains:
        if chain[0] != graph.nodes[start].op_type:
            continue
        picked = [start]
        for op_type in chain[1:]:
            prev = graph.nodes[picked[-1]]
            if len(prev.outputs) != 1 or prev.outputs[0] in outputs:
                break
            users = consumers.get(prev.outputs[0], [])
            if len(users) != 1 or taken[users[0]] or graph.nodes[users[0]].op_type != op_type:
                break
            picked.append(users[0])
        if len(picked) == len(chain):
            return picked
    return [start]
