"""Canonical op keys for lookup tables, and per-node costs (FLOPs, MACs, params, bytes moved).

A key names everything that changes an op's cost and nothing else: the op type, the shapes of
its activation inputs and outputs, its weight shapes, and the attributes that matter (kernel,
stride, dilation, groups, pads, ...). The same conv at the same shape in two models has the same
key; a different stride or group count gives a different key. Node names never enter a key.

Cost conventions (documented, used everywhere):
- ``macs``: multiply-accumulates of Conv/ConvTranspose/Gemm/MatMul; 0 for other ops.
- ``flops``: 2 x macs, plus one per output element for a bias, for elementwise ops (Relu, Add,
  Mul, Clip, ...) and 2 per element for BatchNormalization (scale and shift); pooling counts
  one per input element in each window.
- ``params``: learnable parameters: conv/linear weights and biases, BatchNorm scale and bias
  (running mean/variance are buffers, not parameters).
- ``bytes_moved``: bytes of every activation input, output and weight the op touches once.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

import numpy as np

from latlab.graph import OpGraph, OpNode

__all__ = ["COST_ATTRS", "OpCost", "graph_cost", "op_cost", "op_key"]

#: Attributes that change an op's cost, by op type; others are left out of keys.
COST_ATTRS: dict[str, tuple[str, ...]] = {
    "Conv": ("dilations", "group", "kernel_shape", "pads", "strides"),
    "ConvTranspose": ("dilations", "group", "kernel_shape", "output_padding", "pads", "strides"),
    "AveragePool": ("ceil_mode", "count_include_pad", "kernel_shape", "pads", "strides"),
    "MaxPool": ("ceil_mode", "dilations", "kernel_shape", "pads", "strides"),
    "Gemm": ("transA", "transB"),
    "Flatten": ("axis",),
    "Concat": ("axis",),
    "Softmax": ("axis",),
}
ELEMENTWISE = frozenset(
    {"Relu", "Add", "Mul", "Sub", "Div", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh"}
)
SHAPE_ONLY = frozenset({"Flatten", "Reshape", "Identity", "Squeeze", "Unsqueeze", "Transpose"})


@dataclass(frozen=True)
class OpCost:
    macs: int
    flops: int
    params: int
    bytes_moved: int

    def __add__(self, other: OpCost) -> OpCost:
        return OpCost(
            self.macs + other.macs,
            self.flops + other.flops,
            self.params + other.params,
            self.bytes_moved + other.bytes_moved,
        )


ZERO = OpCost(0, 0, 0, 0)


def _dims(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape) or "scalar"


def _attr_text(value: object) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def op_key(graph: OpGraph, node: OpNode) -> str:
    """``Conv|in=1x16x32x32|out=1x16x32x32|w=16x16x3x3,16|dilations=1,1|group=1|...``."""
    parts = [node.op_type]
    parts.append("in=" + ";".join(_dims(t.shape) for t in graph.activation_inputs(node)))
    parts.append("out=" + ";".join(_dims(graph.spec(t).shape) for t in node.outputs))
    weights = graph.weight_inputs(node)
    if weights:
        parts.append("w=" + ";".join(_dims(t.shape) for t in weights))
    for name in COST_ATTRS.get(node.op_type, ()):
        value = node.attr(name)
        if value is not None:
            parts.append(f"{name}={_attr_text(value)}")
    return "|".join(parts)


def _itemsize(dtype: str) -> int:
    return int(np.dtype(dtype).itemsize)


def op_cost(graph: OpGraph, node: OpNode) -> OpCost:
    ins = graph.activation_inputs(node)
    weights = graph.weight_inputs(node)
    outs = [graph.spec(t) for t in node.outputs]
    out_elems = sum(t.numel for t in outs)
    moved = sum(t.numel * _itemsize(t.dtype) for t in (*ins, *weights, *outs))
    op = node.op_type
    macs = 0
    params = 0
    flops: int
    if op in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
        w = weights[0].shape if weights else graph.spec(node.inputs[1]).shape
        if op == "Conv":
            macs = out_elems * prod(w[1:])
        elif op == "ConvTranspose":
            macs = ins[0].numel * prod(w[1:])
        elif op == "Gemm":
            k = ins[0].shape[0] if node.attr("transA", 0) else ins[0].shape[-1]
            macs = out_elems * k
        else:
            macs = out_elems * ins[0].shape[-1]
        has_bias = len(node.inputs) > 2 and bool(node.inputs[2])
        flops = 2 * macs + (out_elems if has_bias else 0)
        params = sum(t.numel for t in weights)
    elif op == "BatchNormalization":
        flops = 2 * out_elems
        params = 2 * ins[0].shape[1]  # scale and bias; mean/var are buffers
    elif op in ("AveragePool", "MaxPool"):
        kernel = node.attr("kernel_shape", (1,))
        flops = out_elems * prod(kernel)
    elif op in ("GlobalAveragePool", "GlobalMaxPool", "ReduceMean"):
        flops = ins[0].numel
    elif op in ELEMENTWISE:
        flops = out_elems
    elif op in SHAPE_ONLY:
        flops = 0
    else:
        flops = out_elems  # an unlisted op: one per output element, never silently zero
    return OpCost(macs=macs, flops=flops, params=params, bytes_moved=moved)


def graph_cost(graph: OpGraph) -> OpCost:
    total = ZERO
    for node in graph.nodes:
        total = total + op_cost(graph, node)
    return total
