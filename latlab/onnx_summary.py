"""Validate an ONNX file and summarise it (op counts, tensors, params, MACs/FLOPs).

Used by the server on upload; pure ``onnx``, no runtime. Everything that makes a model
unacceptable raises ``ModelInvalid`` with a message a user can act on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from math import prod

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import shape_inference

from latlab.errors import ModelInvalid
from latlab.schemas import ModelSummary, TensorInfo

__all__ = ["MAX_NODES", "external_data_tensors", "load_onnx", "summarize_onnx"]

#: Nodes of one model, subgraphs included (the largest NAS networks have a few thousand).
MAX_NODES = 200_000


def load_onnx(data: bytes, max_nodes: int = MAX_NODES) -> onnx.ModelProto:
    """Parse and check ONNX bytes; refuse external data and graphs of more than ``max_nodes``
    nodes (subgraphs included) before the checker and shape inference run; return the
    shape-inferred model."""
    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, RuntimeWarning, ValueError) as exc:
        raise ModelInvalid(f"not an ONNX model: the protobuf does not parse ({exc})") from exc
    if model.ir_version <= 0 or not model.HasField("graph") or not model.opset_import:
        raise ModelInvalid("not an ONNX model: no ir_version, graph or opset_import")
    if len(model.graph.node) == 0:
        raise ModelInvalid("the ONNX graph has no nodes")
    n_nodes = sum(len(g.node) for g in _all_graphs(model.graph))
    if n_nodes > max_nodes:
        raise ModelInvalid(f"the ONNX model has {n_nodes} nodes; the limit is {max_nodes}")
    external = external_data_tensors(model)
    if external:
        raise ModelInvalid(
            "the model references external data files (tensors "
            f"{', '.join(external[:5])}); upload a single self-contained .onnx file"
        )
    try:
        onnx.checker.check_model(model)
        inferred = shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, shape_inference.InferenceError) as exc:
        raise ModelInvalid(f"the ONNX model fails validation: {_first_line(exc)}") from exc
    return inferred


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:500] if text else type(exc).__name__


def _tensors(model: onnx.ModelProto) -> Iterable[onnx.TensorProto]:
    yield from model.graph.initializer
    for sparse in model.graph.sparse_initializer:
        yield sparse.values
    for graph in _all_graphs(model.graph):
        for node in graph.node:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t
                yield from attr.tensors


def _all_graphs(graph: onnx.GraphProto) -> Iterable[onnx.GraphProto]:
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _all_graphs(attr.g)
            for sub in attr.graphs:
                yield from _all_graphs(sub)


def external_data_tensors(model: onnx.ModelProto) -> list[str]:
    return [
        t.name or "<unnamed>"
        for t in _tensors(model)
        if t.data_location == onnx.TensorProto.EXTERNAL or len(t.external_data) > 0
    ]


def _dims(vi: onnx.ValueInfoProto) -> list[int | str | None]:
    if not vi.type.HasField("tensor_type") or not vi.type.tensor_type.HasField("shape"):
        return []
    out: list[int | str | None] = []
    for d in vi.type.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            out.append(d.dim_param)
        else:
            out.append(None)
    return out


def _tensor_info(vi: onnx.ValueInfoProto) -> TensorInfo:
    elem = vi.type.tensor_type.elem_type if vi.type.HasField("tensor_type") else 0
    dtype = onnx.helper.tensor_dtype_to_string(elem) if elem else "unknown"
    return TensorInfo(name=vi.name, shape=_dims(vi), dtype=dtype.removeprefix("TensorProto."))


def summarize_onnx(model: onnx.ModelProto) -> ModelSummary:
    """Summary of a model returned by ``load_onnx`` (shapes already inferred)."""
    graph = model.graph
    init_names = {t.name for t in graph.initializer}
    shapes: dict[str, list[int | str | None]] = {}
    for vi in [*graph.input, *graph.value_info, *graph.output]:
        shapes[vi.name] = _dims(vi)
    for t in graph.initializer:
        shapes[t.name] = [int(d) for d in t.dims]
    macs: int | None = 0
    for node in graph.node:
        node_macs = _node_macs(node, shapes)
        macs = None if macs is None or node_macs is None else macs + node_macs
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    largest = _largest_tensor(model)
    return ModelSummary(
        n_nodes=len(graph.node),
        op_counts=dict(sorted(Counter(n.op_type for n in graph.node).items())),
        inputs=[_tensor_info(vi) for vi in graph.input if vi.name not in init_names],
        outputs=[_tensor_info(vi) for vi in graph.output],
        opset=int(opset),
        params=sum(prod(t.dims) for t in graph.initializer),
        macs=macs,
        flops=None if macs is None else 2 * macs,
        largest_tensor=None if largest is None else largest[1],
        largest_tensor_bytes=None if largest is None else largest[0],
    )


def _largest_tensor(model: onnx.ModelProto) -> tuple[int, str] | None:
    """(bytes, name) of the largest tensor whose shape is known, in every graph: the main one
    and each subgraph (``If`` branches, ``Loop`` and ``Scan`` bodies), values, initializers
    and constant attributes alike."""
    sizes: list[tuple[int, str]] = []
    for graph in _all_graphs(model.graph):
        sizes.extend(
            (tensor_bytes(_dims(vi), _itemsize(vi.type.tensor_type.elem_type)), vi.name)
            for vi in [*graph.input, *graph.value_info, *graph.output]
            if vi.type.HasField("tensor_type")
        )
        sizes.extend(
            (tensor_bytes(list(t.dims), _itemsize(t.data_type)), t.name) for t in graph.initializer
        )
    sizes.extend(
        (tensor_bytes(list(t.dims), _itemsize(t.data_type)), t.name or "<constant>")
        for t in _tensors(model)
    )
    return max(sizes, default=None)


def _itemsize(elem_type: int) -> int:
    try:
        return int(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)).itemsize)
    except (KeyError, TypeError, ValueError):  # undefined or exotic types: count a byte
        return 1


def tensor_bytes(shape: list[int | str | None], itemsize: int) -> int:
    """Bytes of a tensor of ``shape`` (unknown, symbolic or negative dims counted as 1)."""
    return prod(d if isinstance(d, int) and d > 0 else 1 for d in shape) * itemsize


def _known(shape: list[int | str | None] | None) -> list[int] | None:
    if not shape or any(not isinstance(d, int) for d in shape):
        return None
    return [int(d) for d in shape if isinstance(d, int)]


def _node_macs(node: onnx.NodeProto, shapes: dict[str, list[int | str | None]]) -> int | None:
    """Multiply-accumulates of the matmul-like ops; 0 for every other op."""
    op = node.op_type
    if op not in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
        return 0
    w = _known(shapes.get(node.input[1]))
    y = _known(shapes.get(node.output[0]))
    x = _known(shapes.get(node.input[0]))
    if w is None or y is None or x is None:
        return None
    if op == "Conv":  # W: (C_out, C_in/group, k...), each output element C_in/group*k... MACs
        return prod(y) * prod(w[1:])
    if op == "ConvTranspose":  # each input element scatters C_out/group*k... MACs
        return prod(x) * prod(w[1:])
    if op == "Gemm":  # Y: (M, N), K = the contracted dimension of A
        trans_a = next((a.i for a in node.attribute if a.name == "transA"), 0)
        k = x[0] if trans_a else x[-1]
        return prod(y) * k
    return prod(y) * x[-1]  # MatMul
