"""Validate a TFLite file and summarise it (op counts, input/output tensors, parameters), with
LiteRT's own flatbuffer schema classes: no interpreter, nothing executed.

Used by the server on upload; everything that makes a file unacceptable raises
``ModelInvalid`` with a message a user can act on.
"""

from __future__ import annotations

from collections import Counter
from math import prod
from typing import Any

import numpy as np

from latlab.errors import ModelInvalid
from latlab.onnx_summary import MAX_NODES, tensor_bytes
from latlab.schemas import ModelSummary, TensorInfo

__all__ = ["TFLITE_IDENTIFIER", "is_tflite", "summarize_tflite"]

#: The flatbuffer file identifier, bytes 4..8 of every .tflite file.
TFLITE_IDENTIFIER = b"TFL3"


def is_tflite(data: bytes) -> bool:
    return data[4:8] == TFLITE_IDENTIFIER


def _schema() -> Any:
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError as exc:
        raise ModelInvalid(
            "this server cannot read TFLite models: install it with pip install 'latlab[tflite]'"
        ) from exc
    return schema_py_generated


def summarize_tflite(data: bytes, max_nodes: int = MAX_NODES) -> ModelSummary:
    """The summary of a TFLite file; ``ModelInvalid`` for a file that does not parse or whose
    graph has more than ``max_nodes`` operators (counted before they are read)."""
    if not is_tflite(data):
        raise ModelInvalid("not a TFLite model: no TFL3 flatbuffer identifier")
    schema = _schema()
    try:  # a malformed flatbuffer fails anywhere while it is read: struct, index, unicode errors
        return _summary(schema, schema.Model.GetRootAs(data, 0), max_nodes, len(data))
    except ModelInvalid:
        raise
    except Exception as exc:
        raise ModelInvalid(f"the TFLite flatbuffer does not parse: {exc}") from exc


def _summary(schema: Any, model: Any, max_nodes: int, size: int) -> ModelSummary:
    if model.SubgraphsLength() < 1:
        raise ModelInvalid("the TFLite model has no subgraph")
    graphs = [model.Subgraphs(g) for g in range(model.SubgraphsLength())]
    n_all = sum(g.OperatorsLength() for g in graphs)
    if n_all > max_nodes:
        raise ModelInvalid(f"the TFLite model has {n_all} nodes; the limit is {max_nodes}")
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    types = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        custom = code.CustomCode()
        codes.append(custom.decode() if custom else names.get(builtin, f"BUILTIN_{builtin}"))
    _check_buffers(model, size)
    largest: tuple[int, str] | None = None
    for g, graph in enumerate(graphs):
        _check_indices(model, graph, g, len(codes))
        for i in range(graph.TensorsLength()):
            t = graph.Tensors(i)
            shape = [int(d) for d in t.ShapeAsNumpy()] if t.ShapeLength() else []
            tensor_size = tensor_bytes(list(shape), _itemsize(types.get(t.Type(), "?")))
            if largest is None or tensor_size > largest[0]:
                largest = (tensor_size, (t.Name() or b"").decode(errors="replace"))
    graph = graphs[0]
    ops: Counter[str] = Counter(
        codes[graph.Operators(i).OpcodeIndex()] for i in range(graph.OperatorsLength())
    )
    if not ops:
        raise ModelInvalid("the TFLite graph has no operators")

    def tensor(index: int) -> TensorInfo:
        t = graph.Tensors(index)
        signature = t.ShapeSignatureAsNumpy() if t.ShapeSignatureLength() else t.ShapeAsNumpy()
        shape: list[int | str | None] = [
            int(d) if d >= 0 else None for d in (signature if t.ShapeLength() else [])
        ]
        return TensorInfo(
            name=(t.Name() or b"").decode(), shape=shape, dtype=types.get(t.Type(), "?")
        )

    params = 0
    for i in range(graph.TensorsLength()):
        t = graph.Tensors(i)
        buffer = t.Buffer()
        if buffer > 0 and (
            model.Buffers(buffer).DataLength() > 0 or model.Buffers(buffer).Offset() > 1
        ):
            params += prod(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else 1
    return ModelSummary(
        n_nodes=sum(ops.values()),
        op_counts=dict(ops),
        inputs=[tensor(int(i)) for i in graph.InputsAsNumpy()] if graph.InputsLength() else [],
        outputs=[tensor(int(i)) for i in graph.OutputsAsNumpy()] if graph.OutputsLength() else [],
        opset=int(model.Version()),
        params=params,
        macs=None,
        flops=None,
        largest_tensor=None if largest is None else largest[1],
        largest_tensor_bytes=None if largest is None else largest[0],
    )


def _check_buffers(model: Any, size: int) -> None:
    """A buffer stored after the flatbuffer (models over 2 GB) lies inside the file."""
    for b in range(model.BuffersLength()):
        buffer = model.Buffers(b)
        offset, length = int(buffer.Offset()), int(buffer.Size())
        if offset > 1 and offset + length > size:
            raise ModelInvalid(
                f"buffer {b} points at bytes {offset}..{offset + length} of a {size}-byte file"
            )


def _check_indices(model: Any, graph: Any, g: int, n_codes: int) -> None:
    """Every index of subgraph ``g`` points at something that exists: operators at opcodes,
    operators and the subgraph at tensors (-1: an optional input left out), tensors at
    buffers. LiteRT's loader would refuse the file later, on the device."""
    n_tensors, n_buffers = graph.TensorsLength(), model.BuffersLength()
    where = f"subgraph {g}"

    def in_range(indices: Any, what: str, optional: bool) -> None:
        for index in indices:
            if not (0 <= int(index) < n_tensors or (optional and int(index) == -1)):
                raise ModelInvalid(f"{where}: {what} names tensor {int(index)} of {n_tensors}")

    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        if not 0 <= op.OpcodeIndex() < n_codes:
            raise ModelInvalid(
                f"{where}: operator {i} names opcode {op.OpcodeIndex()} of {n_codes}"
            )
        for what, length, values in (
            ("inputs", op.InputsLength, op.InputsAsNumpy),
            ("outputs", op.OutputsLength, op.OutputsAsNumpy),
            ("intermediates", op.IntermediatesLength, op.IntermediatesAsNumpy),
        ):
            if length():
                in_range(values(), f"operator {i}'s {what}", optional=what == "inputs")
    if graph.InputsLength():
        in_range(graph.InputsAsNumpy(), "an input", optional=False)
    if graph.OutputsLength():
        in_range(graph.OutputsAsNumpy(), "an output", optional=False)
    for i in range(n_tensors):
        buffer = graph.Tensors(i).Buffer()
        if not 0 <= buffer < max(n_buffers, 1):
            raise ModelInvalid(f"{where}: tensor {i} names buffer {buffer} of {n_buffers}")


def _itemsize(type_name: str) -> int:
    try:
        return int(np.dtype(type_name).itemsize)
    except TypeError:  # string, resource, variant, int4: count a byte
        return 1
