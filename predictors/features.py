"""Graph features for the learned predictors, from any OpGraph (a NAS-Bench-201 cell, a
layer-wise network, an uploaded ONNX model), in plain numpy: the serving path needs no torch.

Per node: a one-hot op type (``OP_TYPES``; anything else is ``other``) and cost features from
latlab.opkey and the tensor shapes — channels in/out, output spatial size, kernel, stride,
groups, FLOPs, params, bytes moved — each as ``log1p(value) / scale`` so that they sit near
[0, 1] whatever the network. A global node (index 0) is joined to every node, and its embedding
is what the predictor regresses from. The adjacency is undirected, with self-loops, normalised
``D^-1/2 (A + I) D^-1/2``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import log1p

import numpy as np

from latlab.graph import OpGraph, OpNode
from latlab.opkey import OpCost, op_cost

__all__ = ["FEATURES", "OP_TYPES", "Batch", "GraphFeatures", "batch", "graph_features"]

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
FEATURES = len(OP_TYPES) + len(_NUMERIC)


@dataclass(frozen=True)
class GraphFeatures:
    x: np.ndarray  # [nodes, FEATURES] float32; row 0 is the global node
    adj: np.ndarray  # [nodes, nodes] float32, normalised, self-loops included
    #: The graph's total cost, (MFLOPs, MB moved): what a cost baseline is fitted on.
    cost: tuple[float, float] = (0.0, 0.0)

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


def graph_features(graph: OpGraph) -> GraphFeatures:
    n = len(graph.nodes) + 1
    x = np.zeros((n, FEATURES), dtype=np.float32)
    x[0, _TYPE_INDEX["global"]] = 1.0
    producer = {t: i + 1 for i, node in enumerate(graph.nodes) for t in node.outputs}
    a = np.eye(n, dtype=np.float32)
    a[0, :] = a[:, 0] = 1.0
    flops = bytes_moved = 0
    for i, node in enumerate(graph.nodes, start=1):
        x[i, _TYPE_INDEX.get(node.op_type, _TYPE_INDEX["other"])] = 1.0
        numeric, cost = _numeric(graph, node)
        x[i, len(OP_TYPES) :] = numeric
        flops += cost.flops
        bytes_moved += cost.bytes_moved
        for t in node.inputs:
            j = producer.get(t)
            if j is not None:
                a[i, j] = a[j, i] = 1.0
    inv_sqrt = 1.0 / np.sqrt(a.sum(axis=1))
    return GraphFeatures(
        x=x,
        adj=(a * inv_sqrt[:, None] * inv_sqrt[None, :]).astype(np.float32),
        cost=(flops / 1e6, bytes_moved / 1e6),
    )


@dataclass(frozen=True)
class Batch:
    x: np.ndarray  # [B, N, FEATURES]
    adj: np.ndarray  # [B, N, N]; padding rows and columns are zero


def batch(items: Sequence[GraphFeatures]) -> Batch:
    """Pad to the largest graph: padded nodes have no features and no edges, so they never
    reach the global node (row 0) that the prediction is read from."""
    size = max(f.nodes for f in items)
    x = np.zeros((len(items), size, FEATURES), dtype=np.float32)
    adj = np.zeros((len(items), size, size), dtype=np.float32)
    for k, f in enumerate(items):
        x[k, : f.nodes] = f.x
        adj[k, : f.nodes, : f.nodes] = f.adj
    return Batch(x=x, adj=adj)
