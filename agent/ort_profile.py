"""onnxruntime's profiler output -> per-kernel times, mapped back to the uploaded graph's nodes.

onnxruntime executes an optimised graph: BatchNorm folded into Conv, Conv+Relu fused into
``FusedConv``, Identity/Dropout removed, constants folded, and on x86 CPUs the NCHWc layout
transformer replaces Conv chains with ``com.microsoft.nchwc`` kernels joined by renamed tensors
(``reorder_token_N``) and bracketed by ``ReorderInput``/``ReorderOutput``. Kernel names in the
profile are the optimised graph's node names, so they are mapped back through tensor names:

1. Regions. A tensor name present in both graphs is a boundary. Within each graph, a tensor
   that is not a boundary joins its producer and consumers into one region; across graphs, the
   producers of the same boundary tensor are joined. A region is the smallest set of original
   nodes whose computation the kernels of the same region perform together, so attributions
   never cross a boundary: nothing is lost and nothing is counted twice across regions.
2. Anchors, inside a region with several kernels (at level "all" the whole NCHWc body of a
   CNN is one region, its tensors all renamed). A kernel converted in place keeps its node's
   name and is anchored to it; an NCHWc kernel is named after the tensor its fused chain ends
   in (``<tensor>_nchwc``) and is anchored to that tensor's producer. Every original node of
   the region goes to the nearest anchor downstream of it (upstream if there is none). A
   region with no anchor lists all its original nodes on each of its kernels.

Kernels with no original node in their region (a layout conversion) list no source nodes.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import onnx

from latlab.schemas import OpTiming

__all__ = ["KernelTime", "kernel_times", "map_to_source", "parse_profile", "unmapped"]

KERNEL_SUFFIX = "_kernel_time"
NCHWC_SUFFIX = "_nchwc"


@dataclass(frozen=True)
class KernelTime:
    node_name: str
    op_type: str
    provider: str | None
    dur_us: float  # median over the profiled runs
    n: int


def parse_profile(events: Sequence[dict[str, object]], skip_runs: int = 0) -> list[KernelTime]:
    """Median kernel time per node, in first-execution order; each node's first ``skip_runs``
    executions (the profiled session's warm-up) are dropped."""
    durations: dict[str, list[float]] = defaultdict(list)
    meta: dict[str, tuple[str, str | None]] = {}
    for event in events:
        name = event.get("name")
        if event.get("cat") != "Node" or not isinstance(name, str):
            continue
        if not name.endswith(KERNEL_SUFFIX):
            continue
        node = name.removesuffix(KERNEL_SUFFIX)
        args = event.get("args")
        args = args if isinstance(args, dict) else {}
        dur = event.get("dur")
        if not isinstance(dur, int | float):
            continue
        durations[node].append(float(dur))
        provider = args.get("provider")
        meta.setdefault(node, (str(args.get("op_name", "")), str(provider) if provider else None))
    return [
        KernelTime(
            node, meta[node][0], meta[node][1], statistics.median(d[skip_runs:]), len(d) - skip_runs
        )
        for node, d in durations.items()
        if len(d) > skip_runs
    ]


def kernel_times(profile_path: Path, skip_runs: int = 0) -> list[KernelTime]:
    with profile_path.open() as f:
        events = json.load(f)
    return parse_profile(events, skip_runs)


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        self.parent[self.find(a)] = self.find(b)


def _tensors(graph: onnx.GraphProto) -> set[str]:
    names = {v.name for v in graph.input} | {v.name for v in graph.output}
    for node in graph.node:
        names.update(t for t in node.input if t)
        names.update(t for t in node.output if t)
    return names


def _join_internal(
    uf: _UnionFind, prefix: str, nodes: Iterable[onnx.NodeProto], shared: set[str]
) -> dict[str, str]:
    """Union producer and consumers of every non-boundary tensor; return tensor -> producer id."""
    producer: dict[str, str] = {}
    nodes = list(nodes)
    for i, node in enumerate(nodes):
        nid = f"{prefix}{i}"
        uf.find(nid)
        for t in node.output:
            if t:
                producer[t] = nid
    for i, node in enumerate(nodes):
        for t in node.input:
            if t and t not in shared and t in producer:
                uf.union(f"{prefix}{i}", producer[t])
    return producer


def map_to_source(
    kernels: Sequence[KernelTime], original: onnx.GraphProto, optimized: onnx.GraphProto
) -> list[OpTiming]:
    """Per-kernel rows with the original node names each kernel computes."""
    shared = _tensors(original) & _tensors(optimized)
    uf = _UnionFind()
    orig_nodes, opt_nodes = list(original.node), list(optimized.node)
    orig_producer = _join_internal(uf, "o", orig_nodes, shared)
    opt_producer = _join_internal(uf, "x", opt_nodes, shared)
    for tensor in shared:
        if tensor in orig_producer and tensor in opt_producer:
            uf.union(orig_producer[tensor], opt_producer[tensor])

    region_orig: dict[str, list[int]] = defaultdict(list)
    region_opt: dict[str, list[int]] = defaultdict(list)
    for i in range(len(orig_nodes)):
        region_orig[uf.find(f"o{i}")].append(i)
    for i in range(len(opt_nodes)):
        region_opt[uf.find(f"x{i}")].append(i)

    sources: dict[int, list[int]] = {}  # optimized node index -> original node indices
    for region, opt_ids in region_opt.items():
        orig_ids = region_orig.get(region, [])
        if len(opt_ids) == 1:
            sources[opt_ids[0]] = orig_ids
        else:
            sources.update(_anchor(opt_ids, orig_ids, orig_nodes, opt_nodes, orig_producer))

    by_name: dict[str, list[int]] = defaultdict(list)
    for i, node in enumerate(opt_nodes):
        by_name[node.name].append(i)
    rows = []
    for k in kernels:
        orig_ids = sorted({o for i in by_name.get(k.node_name, []) for o in sources.get(i, [])})
        rows.append(
            OpTiming(
                node_name=k.node_name,
                op_type=k.op_type,
                provider=k.provider,
                dur_us=k.dur_us,
                n=k.n,
                source_nodes=[orig_nodes[o].name for o in orig_ids],
            )
        )
    return rows


def unmapped(kernels: Sequence[KernelTime]) -> list[OpTiming]:
    """Per-kernel rows without source nodes (no optimised graph to map through)."""
    return [
        OpTiming(
            node_name=k.node_name, op_type=k.op_type, provider=k.provider, dur_us=k.dur_us, n=k.n
        )
        for k in kernels
    ]


def _anchor(
    opt_ids: list[int],
    orig_ids: list[int],
    orig_nodes: list[onnx.NodeProto],
    opt_nodes: list[onnx.NodeProto],
    orig_producer: dict[str, str],
) -> dict[int, list[int]]:
    in_region = set(orig_ids)
    orig_by_name = {orig_nodes[i].name: i for i in orig_ids}
    anchors: dict[int, int] = {}  # original node index -> optimized node index
    for x in opt_ids:
        name = opt_nodes[x].name
        if name in orig_by_name:  # a node converted in place keeps its name
            anchors[orig_by_name[name]] = x
        elif name.endswith(NCHWC_SUFFIX):
            producer = orig_producer.get(name.removesuffix(NCHWC_SUFFIX))
            if producer is not None and int(producer[1:]) in in_region:
                anchors[int(producer[1:])] = x
    if not anchors:
        return {x: list(orig_ids) for x in opt_ids}
    consumers: dict[int, list[int]] = defaultdict(list)
    producers: dict[int, list[int]] = defaultdict(list)
    for i in orig_ids:
        for t in orig_nodes[i].input:
            p = orig_producer.get(t)
            if p is not None and int(p[1:]) in in_region:
                consumers[int(p[1:])].append(i)
                producers[i].append(int(p[1:]))
    result: dict[int, list[int]] = {x: [] for x in opt_ids}
    for i in orig_ids:
        target = _nearest(i, anchors, consumers)
        if target is None:
            target = _nearest(i, anchors, producers)
        if target is not None:
            result[target].append(i)
    return result


def _nearest(start: int, anchors: dict[int, int], edges: dict[int, list[int]]) -> int | None:
    """Breadth-first along ``edges`` from ``start`` (inclusive) to the first anchored node."""
    frontier, seen = [start], {start}
    while frontier:
        for node in sorted(frontier):
            if node in anchors:
                return anchors[node]
        nxt = []
        for node in frontier:
            for n in edges.get(node, []):
                if n not in seen:
                    seen.add(n)
                    nxt.append(n)
        frontier = nxt
    return None
