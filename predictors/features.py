"""Graph features for the learned predictors, from any OpGraph (a NAS-Bench-201 cell, a
layer-wise network, an uploaded ONNX model), in plain numpy: the serving path needs no torch.

Every op of the graph is a node, dead or not: a device that runs a network as a framework's
eager code computes dead ops, one that runs it through a deployment toolchain does not, and only
the device's data can say which it is. So each node carries, beside a one-hot op type
(``OP_TYPES``; anything else is ``other``) and cost features from latlab.opkey and the tensor
shapes (channels in/out, output spatial size, kernel, stride, groups, FLOPs, params, bytes
moved, each as ``log1p(value) / scale`` so that they sit near [0, 1] whatever the network), three
flags: ``fed`` (its result depends on the graph input), ``used`` (its result reaches a graph
output) and ``live`` (a pruning runtime computes it: fed, used, and not a sum of a single fed
term, which pruned is no op at all). A multiplication by a constant zero (``x * 0``, how an
eager network computes a ``none`` edge) cuts both: its result depends on nothing, and its
input reaches nothing through it.

A global node (index 0) is joined to every node, and its embedding is what the GCN regresses
from. Two adjacencies, each undirected with self-loops and normalised ``D^-1/2 (A + I) D^-1/2``:
``adj`` joins every op to its producers and consumers; ``adj_live`` only live ops (and the
global node only to them; a reader of a sum of one fed term is joined to that term's op), so a
GCN that learns to use it alone reads exactly the pruned network, and one that uses ``adj`` reads every op: each layer has weights for both
(predictors.gcn), and the device's data sets them.

Beside the graph, each item carries its totals in both readings (``cost_pruned`` over the live
ops, ``cost_full`` over every op, as MFLOPs and MB moved) and the space's one-hot arch encoding,
of every choice and of the live ones: the columns of the linear models (predictors.linear).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from math import log1p
from typing import Any

import numpy as np

from latlab.graph import OpGraph, OpNode
from latlab.opkey import OpCost, op_cost
from latlab.spaces import get_space

__all__ = [
    "FEATURES",
    "OP_TYPES",
    "Batch",
    "GraphFeatures",
    "NodeFlags",
    "arch_features",
    "batch",
    "graph_features",
    "node_flags",
]

OP_TYPES: tuple[str, ...] = (
    "global",
    "Conv",
    "ConvTranspose",
    "Gemm",
    "MatMul",
    "BatchNormalization",
    "Relu",
    "Clip",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Add",
    "Mul",
    "Concat",
    "AveragePool",
    "MaxPool",
    "GlobalAveragePool",
    "Flatten",
    "Reshape",
    "other",
)
_TYPE_INDEX = {t: i for i, t in enumerate(OP_TYPES)}
#: Numeric features and the divisor of their log1p (about the log of the largest value seen in
#: mobile-scale networks), so each is near [0, 1].
_NUMERIC: tuple[tuple[str, float], ...] = (
    ("channels_in", 8.0),
    ("channels_out", 8.0),
    ("spatial", 12.0),
    ("kernel", 2.5),
    ("stride", 1.5),
    ("groups", 8.0),
    ("flops", 25.0),
    ("params", 18.0),
    ("bytes", 20.0),
)
_FLAGS = ("fed", "used", "live")
FEATURES = len(OP_TYPES) + len(_NUMERIC) + len(_FLAGS)
_FLAG_COLUMN = len(OP_TYPES) + len(_NUMERIC)


@dataclass(frozen=True)
class GraphFeatures:
    x: np.ndarray  # [nodes, FEATURES] float32; row 0 is the global node
    adj: np.ndarray  # [nodes, nodes] float32, normalised, self-loops included
    #: The same among live ops only (dead ops keep their self-loop).
    adj_live: np.ndarray
    #: (MFLOPs, MB moved) of the live ops: the network as a pruning runtime runs it.
    cost_pruned: tuple[float, float] = (0.0, 0.0)
    #: (MFLOPs, MB moved) of every op: the network as an eager framework runs it.
    cost_full: tuple[float, float] = (0.0, 0.0)
    #: The space's one-hot arch encoding (SearchSpace.encoding); empty for a whole model.
    onehot: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: The same for the live choices only (SearchSpace.live_encoding); may be empty.
    onehot_live: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def nodes(self) -> int:
        return int(self.x.shape[0])


def _numeric(graph: OpGraph, node: OpNode) -> tuple[list[float], OpCost]:
    ins = graph.activation_inputs(node)
    out = graph.spec(node.outputs[0]).shape if node.outputs else ()
    c_in = ins[0].shape[1] if ins and len(ins[0].shape) >= 2 else 0
    c_out = out[1] if len(out) >= 2 else (out[-1] if out else 0)
    spatial = int(np.prod(out[2:])) if len(out) > 2 else 1
    kernel = node.attr("kernel_shape")
    strides = node.attr("strides")
    cost = op_cost(graph, node)
    values = {
        "channels_in": c_in,
        "channels_out": c_out,
        "spatial": spatial,
        "kernel": max(kernel) if kernel else 0,
        "stride": max(strides) if strides else 0,
        "groups": int(node.attr("group", 1)),
        "flops": cost.flops,
        "params": cost.params,
        "bytes": cost.bytes_moved,
    }
    return [log1p(values[name]) / scale for name, scale in _NUMERIC], cost


def _is_zero(graph: OpGraph, node: OpNode) -> bool:
    """``x * 0`` with a constant zero: its result is zero whatever ``x`` is."""
    return node.op_type == "Mul" and any(
        t in graph.weights and graph.spec(t).value == 0.0 for t in node.inputs
    )


#: Ops that sum their inputs: with a single fed term a pruned network has no such op.
_SUMS = frozenset({"Add", "Sum"})


@dataclass(frozen=True)
class NodeFlags:
    """Per node, in graph order (topological)."""

    #: Its result depends on the graph input (a multiplication by a constant zero cuts it).
    fed: list[bool]
    #: Its result reaches a graph output (not through a multiplication by zero).
    used: list[bool]
    #: A pruning runtime computes it: fed, used, and not a sum of at most one fed term.
    live: list[bool]
    #: The output of a sum of one fed term -> the tensor it passes on (resolved through
    #: chains): what its readers read in the pruned network.
    passes: dict[str, str]


def node_flags(graph: OpGraph) -> NodeFlags:
    zero = [_is_zero(graph, node) for node in graph.nodes]
    fed_tensors = set(graph.inputs)
    fed = []
    for node, is_zero in zip(graph.nodes, zero, strict=True):
        is_fed = not is_zero and any(t in fed_tensors for t in node.inputs)
        fed.append(is_fed)
        if is_fed:
            fed_tensors.update(node.outputs)
    used_tensors = set(graph.outputs)
    used = [False] * len(graph.nodes)
    for i in range(len(graph.nodes) - 1, -1, -1):
        node = graph.nodes[i]
        used[i] = any(t in used_tensors for t in node.outputs)
        if used[i] and not zero[i]:
            used_tensors.update(node.inputs)
    live = []
    passes: dict[str, str] = {}
    for node, f, u in zip(graph.nodes, fed, used, strict=True):
        terms = [t for t in node.inputs if t in fed_tensors]
        single = node.op_type in _SUMS and len(terms) <= 1
        live.append(f and u and not single)
        if single and terms and node.outputs:
            passes[node.outputs[0]] = passes.get(terms[0], terms[0])
    return NodeFlags(fed, used, live, passes)


def graph_features(
    graph: OpGraph, onehot: np.ndarray | None = None, onehot_live: np.ndarray | None = None
) -> GraphFeatures:
    n = len(graph.nodes) + 1
    x = np.zeros((n, FEATURES), dtype=np.float32)
    x[0, _TYPE_INDEX["global"]] = 1.0
    producer = {t: i + 1 for i, node in enumerate(graph.nodes) for t in node.outputs}
    flags = node_flags(graph)
    live = np.array([True, *flags.live])
    a = np.eye(n, dtype=np.float32)
    a[0, :] = a[:, 0] = 1.0
    a_live = np.eye(n, dtype=np.float32)
    a_live[0, live] = a_live[live, 0] = 1.0
    pruned = OpCost(0, 0, 0, 0)
    full = OpCost(0, 0, 0, 0)
    for i, node in enumerate(graph.nodes, start=1):
        x[i, _TYPE_INDEX.get(node.op_type, _TYPE_INDEX["other"])] = 1.0
        numeric, cost = _numeric(graph, node)
        x[i, len(OP_TYPES) : _FLAG_COLUMN] = numeric
        x[i, _FLAG_COLUMN:] = (flags.fed[i - 1], flags.used[i - 1], live[i])
        full += cost
        if live[i]:
            pruned += cost
        for t in node.inputs:
            j = producer.get(t)
            if j is not None:
                a[i, j] = a[j, i] = 1.0
            j = producer.get(flags.passes.get(t, t))
            if j is not None and live[j] and live[i]:
                a_live[i, j] = a_live[j, i] = 1.0
    return GraphFeatures(
        x=x,
        adj=_normalised(a),
        adj_live=_normalised(a_live),
        cost_pruned=(pruned.flops / 1e6, pruned.bytes_moved / 1e6),
        cost_full=(full.flops / 1e6, full.bytes_moved / 1e6),
        onehot=np.zeros(0) if onehot is None else np.asarray(onehot, dtype=np.float64),
        onehot_live=np.zeros(0) if onehot_live is None else np.asarray(onehot_live, np.float64),
    )


def _normalised(a: np.ndarray) -> np.ndarray:
    inv_sqrt = 1.0 / np.sqrt(a.sum(axis=1))
    normalised: np.ndarray = (a * inv_sqrt[:, None] * inv_sqrt[None, :]).astype(np.float32)
    return normalised


#: Features of archs already built, per (space, parameters, arch): a space's archs are
#: featurised once per process, whatever trains or serves them.
_CACHE: OrderedDict[tuple[str, tuple[tuple[str, Any], ...], str], GraphFeatures] = OrderedDict()
_CACHE_MAX = 50_000
_CACHE_LOCK = threading.Lock()


def arch_features(
    space_name: str, space_params: Mapping[str, Any], archs: Sequence[Any]
) -> list[GraphFeatures]:
    """Features of archs of a space (anything its ``parse`` takes, or its arch objects): the
    predictor graph and the arch encoding, built once per arch and process."""
    space = get_space(space_name, **space_params)
    params = tuple(sorted(space_params.items()))
    out = []
    for item in archs:
        arch = item if not isinstance(item, str | int) else space.parse(item)
        key = (space.name, params, space.encode(arch))
        with _CACHE_LOCK:
            found = _CACHE.get(key)
            if found is not None:
                _CACHE.move_to_end(key)
        if found is None:
            found = graph_features(
                space.predictor_graph(arch), space.encoding(arch), space.live_encoding(arch)
            )
            with _CACHE_LOCK:
                _CACHE[key] = found
                while len(_CACHE) > _CACHE_MAX:
                    _CACHE.popitem(last=False)
        out.append(found)
    return out


@dataclass(frozen=True)
class Batch:
    x: np.ndarray  # [B, N, FEATURES]
    adj: np.ndarray  # [B, N, N]; padding rows and columns are zero
    adj_live: np.ndarray  # [B, N, N]


def batch(items: Sequence[GraphFeatures]) -> Batch:
    """Pad to the largest graph: padded nodes have no features and no edges, so they never
    reach the global node (row 0) that the prediction is read from."""
    size = max(f.nodes for f in items)
    x = np.zeros((len(items), size, FEATURES), dtype=np.float32)
    adj = np.zeros((len(items), size, size), dtype=np.float32)
    adj_live = np.zeros((len(items), size, size), dtype=np.float32)
    for k, f in enumerate(items):
        x[k, : f.nodes] = f.x
        adj[k, : f.nodes, : f.nodes] = f.adj
        adj_live[k, : f.nodes, : f.nodes] = f.adj_live
    return Batch(x=x, adj=adj, adj_live=adj_live)
