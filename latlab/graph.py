"""OpGraph: the one internal graph form, built from ONNX models and from search spaces.

Nodes use ONNX operator names and attribute conventions (NCHW). A node's ``inputs`` lists
tensor names in the operator's order, activations and weights alike; ``OpGraph.weights`` says
which names are parameters (initializers). Every tensor's shape and dtype is known, so costs
and op keys (latlab/opkey.py) can be computed without a runtime.

    graph = OpGraph.from_onnx(model)          # after shape inference
    builder = GraphBuilder("net", input_shape=(1, 3, 32, 32)); ...; graph = builder.build()
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from math import prod
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from latlab.errors import ModelInvalid

__all__ = ["AttrValue", "GraphBuilder", "OpGraph", "OpNode", "TensorSpec", "unique_node_names"]

AttrValue = int | float | str | tuple[int, ...] | tuple[float, ...]


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    #: The value of a rank-0 constant (``Mul(x, 0)``); None for activations and parameters.
    value: float | None = None

    @property
    def numel(self) -> int:
        return prod(self.shape)


@dataclass(frozen=True)
class OpNode:
    name: str
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: tuple[tuple[str, AttrValue], ...] = ()

    def attr(self, key: str, default: Any = None) -> Any:
        for k, v in self.attrs:
            if k == key:
                return v
        return default


def _f32(value: float) -> float:
    """ONNX keeps float attributes as float32: compare them at that precision."""
    return float(np.float32(value))


def _norm(value: AttrValue) -> AttrValue:
    if isinstance(value, float):
        return _f32(value)
    if isinstance(value, tuple) and value and isinstance(value[0], float):
        return tuple(_f32(float(v)) for v in value)
    return value


def _attrs(items: Mapping[str, AttrValue]) -> tuple[tuple[str, AttrValue], ...]:
    return tuple(sorted((k, _norm(v)) for k, v in items.items()))


@dataclass(frozen=True)
class OpGraph:
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    nodes: tuple[OpNode, ...]  # topological order
    tensors: Mapping[str, TensorSpec] = field(compare=True)
    weights: frozenset[str] = frozenset()

    def spec(self, tensor: str) -> TensorSpec:
        return self.tensors[tensor]

    def activation_inputs(self, node: OpNode) -> list[TensorSpec]:
        return [self.tensors[t] for t in node.inputs if t and t not in self.weights]

    def weight_inputs(self, node: OpNode) -> list[TensorSpec]:
        return [self.tensors[t] for t in node.inputs if t in self.weights]

    def edges(self) -> Iterator[tuple[int, int]]:
        """(producer index, consumer index) for every activation passed between nodes."""
        producer = {t: i for i, n in enumerate(self.nodes) for t in n.outputs}
        for j, node in enumerate(self.nodes):
            for t in node.inputs:
                if t in producer:
                    yield producer[t], j

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for node in self.nodes:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
        return dict(sorted(counts.items()))

    # ------------------------------------------------------------------ ONNX

    @classmethod
    def from_onnx(cls, model: onnx.ModelProto) -> OpGraph:
        """From a shape-inferred model (``latlab.onnx_summary.load_onnx`` gives one)."""
        graph = model.graph
        tensors: dict[str, TensorSpec] = {}
        weights: set[str] = set()
        for init in graph.initializer:
            value = float(numpy_helper.to_array(init)) if len(init.dims) == 0 else None
            tensors[init.name] = TensorSpec(
                init.name, tuple(int(d) for d in init.dims), _dtype(init.data_type), value
            )
            weights.add(init.name)
        for vi in [*graph.input, *graph.value_info, *graph.output]:
            if vi.name in tensors:
                continue
            tensors[vi.name] = _spec_of(vi)
        nodes = []
        for node, name in zip(graph.node, unique_node_names(graph), strict=True):
            if node.op_type == "Constant":
                raise ModelInvalid(
                    "Constant nodes are not supported in an OpGraph; fold them into initializers"
                )
            attrs = {a.name: _attr_value(a) for a in node.attribute}
            nodes.append(
                OpNode(
                    name,
                    node.op_type,
                    tuple(node.input),
                    tuple(node.output),
                    _attrs(attrs),
                )
            )
        missing = [t for n in nodes for t in (*n.inputs, *n.outputs) if t and t not in tensors]
        if missing:
            raise ModelInvalid(f"no shape for tensors {missing[:5]}: run shape inference first")
        inputs = tuple(vi.name for vi in graph.input if vi.name not in weights)
        return cls(
            graph.name,
            inputs,
            tuple(vi.name for vi in graph.output),
            tuple(nodes),
            tensors,
            frozenset(weights),
        )


def unique_node_names(graph: onnx.GraphProto) -> list[str]:
    """A unique name per node, the same wherever a model is read (the agent's profiler rows
    name these; the server's OpGraph must agree): a node keeps its name when it has one not
    seen before; otherwise ``{name or op_type}_{index}``, avoiding every name in the graph."""
    taken = {node.name for node in graph.node if node.name}
    seen: set[str] = set()
    names = []
    for i, node in enumerate(graph.node):
        if node.name and node.name not in seen:
            name = node.name
        else:
            base = name = f"{node.name or node.op_type}_{i}"
            suffix = 0
            while name in taken:
                suffix += 1
                name = f"{base}_{suffix}"
            taken.add(name)
        seen.add(name)
        names.append(name)
    return names


def _dtype(elem_type: int) -> str:
    return str(helper.tensor_dtype_to_np_dtype(elem_type))


def _spec_of(vi: onnx.ValueInfoProto) -> TensorSpec:
    tt = vi.type.tensor_type
    dims = []
    for d in tt.shape.dim:
        if not d.HasField("dim_value"):
            raise ModelInvalid(f"tensor {vi.name!r} has a symbolic or unknown dimension")
        dims.append(int(d.dim_value))
    return TensorSpec(vi.name, tuple(dims), _dtype(tt.elem_type))


def _attr_value(attr: onnx.AttributeProto) -> AttrValue:
    value = helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        if all(isinstance(v, int) for v in value):
            return tuple(int(v) for v in value)
        if all(isinstance(v, float) for v in value):
            return tuple(float(v) for v in value)
        raise ModelInvalid(f"attribute {attr.name!r}: unsupported list value")
    if isinstance(value, int | float | str):
        return value
    raise ModelInvalid(f"attribute {attr.name!r} of type {type(value).__name__} is not supported")


# --------------------------------------------------------------------------- building


def _conv_out(
    size: int, k: int, stride: int, pad_begin: int, pad_end: int, dilation: int = 1
) -> int:
    return (size + pad_begin + pad_end - dilation * (k - 1) - 1) // stride + 1


class GraphBuilder:
    """Build an OpGraph op by op, with shapes computed by ONNX's rules (NCHW, float32)."""

    def __init__(self, name: str, input_shape: Iterable[int], input_name: str = "input") -> None:
        self.name = name
        self.tensors: dict[str, TensorSpec] = {}
        self.weights: set[str] = set()
        self.nodes: list[OpNode] = []
        self.input = input_name
        self.tensors[input_name] = TensorSpec(input_name, tuple(input_shape))

    def shape(self, tensor: str) -> tuple[int, ...]:
        return self.tensors[tensor].shape

    def _weight(self, name: str, shape: tuple[int, ...], value: float | None = None) -> str:
        self.tensors[name] = TensorSpec(name, shape, value=value)
        self.weights.add(name)
        return name

    def _add(
        self,
        name: str,
        op_type: str,
        inputs: list[str],
        out_shape: tuple[int, ...],
        **attrs: AttrValue,
    ) -> str:
        if name in self.tensors:
            raise ValueError(f"duplicate tensor name {name!r}")
        self.tensors[name] = TensorSpec(name, out_shape)
        self.nodes.append(OpNode(name, op_type, tuple(inputs), (name,), _attrs(attrs)))
        return name

    def conv(
        self,
        name: str,
        x: str,
        c_out: int,
        k: int,
        stride: int = 1,
        *,
        groups: int = 1,
        bias: bool = False,
    ) -> str:
        n, c_in, h, w = self.shape(x)
        pad = k // 2
        out = (n, c_out, _conv_out(h, k, stride, pad, pad), _conv_out(w, k, stride, pad, pad))
        inputs = [x, self._weight(f"{name}.weight", (c_out, c_in // groups, k, k))]
        if bias:
            inputs.append(self._weight(f"{name}.bias", (c_out,)))
        return self._add(
            name,
            "Conv",
            inputs,
            out,
            dilations=(1, 1),
            group=groups,
            kernel_shape=(k, k),
            pads=(pad,) * 4,
            strides=(stride, stride),
        )

    def batch_norm(self, name: str, x: str) -> str:
        c = self.shape(x)[1]
        params = [self._weight(f"{name}.{p}", (c,)) for p in ("scale", "bias", "mean", "var")]
        return self._add(name, "BatchNormalization", [x, *params], self.shape(x), epsilon=1e-5)

    def relu(self, name: str, x: str) -> str:
        return self._add(name, "Relu", [x], self.shape(x))

    def relu6(self, name: str, x: str) -> str:
        return self._add(
            name,
            "Clip",
            [x, self._weight(f"{name}.min", (), 0.0), self._weight(f"{name}.max", (), 6.0)],
            self.shape(x),
        )

    def hard_swish(self, name: str, x: str) -> str:
        """``x * relu6(x + 3) / 6`` (MobileNetV3's h-swish)."""
        return self._add(name, "HardSwish", [x], self.shape(x))

    def hard_sigmoid(self, name: str, x: str) -> str:
        """``relu6(x + 3) / 6`` (MobileNetV3's h-sigmoid: ONNX HardSigmoid, alpha 1/6)."""
        return self._add(name, "HardSigmoid", [x], self.shape(x), alpha=1.0 / 6.0, beta=0.5)

    def mul(self, name: str, x: str, scale: str) -> str:
        """``x * scale``, ``scale`` one value per channel (N, C, 1, 1): a squeeze-excite gate."""
        n, c = self.shape(x)[:2]
        if self.shape(scale) != (n, c, 1, 1):
            raise ValueError(f"Mul {name}: {self.shape(scale)} is not one value per channel")
        return self._add(name, "Mul", [x, scale], self.shape(x))

    def add(self, name: str, a: str, b: str) -> str:
        if self.shape(a) != self.shape(b):
            raise ValueError(f"Add {name}: shapes {self.shape(a)} and {self.shape(b)} differ")
        return self._add(name, "Add", [a, b], self.shape(a))

    def zeros_like(self, name: str, x: str) -> str:
        """``x * 0``: a tensor of zeros shaped like ``x`` (a cell output fed by nothing)."""
        return self._add(name, "Mul", [x, self._weight(f"{name}.zero", (), 0.0)], self.shape(x))

    def avg_pool(
        self, name: str, x: str, k: int, stride: int, pad: int, *, count_include_pad: bool
    ) -> str:
        n, c, h, w = self.shape(x)
        out = (n, c, _conv_out(h, k, stride, pad, pad), _conv_out(w, k, stride, pad, pad))
        return self._add(
            name,
            "AveragePool",
            [x],
            out,
            count_include_pad=int(count_include_pad),
            kernel_shape=(k, k),
            pads=(pad,) * 4,
            strides=(stride, stride),
        )

    def global_avg_pool(self, name: str, x: str) -> str:
        n, c, _, _ = self.shape(x)
        return self._add(name, "GlobalAveragePool", [x], (n, c, 1, 1))

    def flatten(self, name: str, x: str) -> str:
        shape = self.shape(x)
        return self._add(name, "Flatten", [x], (shape[0], prod(shape[1:])), axis=1)

    def linear(self, name: str, x: str, c_out: int) -> str:
        n, c_in = self.shape(x)
        w = self._weight(f"{name}.weight", (c_out, c_in))
        b = self._weight(f"{name}.bias", (c_out,))
        return self._add(name, "Gemm", [x, w, b], (n, c_out), transB=1)

    def build(self, output: str) -> OpGraph:
        return OpGraph(
            self.name,
            (self.input,),
            (output,),
            tuple(self.nodes),
            dict(self.tensors),
            frozenset(self.weights),
        )
