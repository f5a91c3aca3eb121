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
        return _summary(schema, schema.Model.GetRootAs(data, 0), max_nodes)
    except ModelInvalid:
        raise
    except Exception as exc:
        raise ModelInvalid(f"the TFLite flatbuffer does not parse: {exc}") from exc


def _summary(schema: Any, model: Any, max_nodes: int) -> ModelSummary:
    if model.SubgraphsLength() < 1:
        raise ModelInvalid("the TFLite model has no subgraph")
    n_nodes = model.Subgraphs(0).OperatorsLength()
    if n_nodes > max_nodes:
        raise ModelInvalid(f"the TFLite model has {n_nodes} nodes; the limit is {max_nodes}")
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    types = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        custom = code.CustomCode()
        codes.append(custom.decode() if custom else names.get(builtin, f"BUILTIN_{builtin}"))
    graph = model.Subgraphs(0)
    ops: Counter[str] = Counter()
    for i in range(graph.OperatorsLength()):
        index = graph.Operators(i).OpcodeIndex()
        if not 0 <= index < len(codes):
            raise ModelInvalid(f"operator {i} names opcode {index} of {len(codes)}")
        ops[codes[index]] += 1
    if not ops:
        raise ModelInvalid("the TFLite graph has no operators")

    def tensor(index: int) -> TensorInfo:
        if not 0 <= index < graph.TensorsLength():
            raise ModelInvalid(f"tensor {index} of {graph.TensorsLength()} does not exist")
        t = graph.Tensors(index)
        signature = t.ShapeSignatureAsNumpy() if t.ShapeSignatureLength() else t.ShapeAsNumpy()
        shape: list[int | str | None] = [
            int(d) if d >= 0 else None for d in (signature if t.ShapeLength() else [])
        ]
        return TensorInfo(
            name=(t.Name() or b"").decode(), shape=shape, dtype=types.get(t.Type(), "?")
        )

    params = 0
    largest: tuple[int, str] | None = None
    for i in range(graph.TensorsLength()):
        t = graph.Tensors(i)
        shape: list[int | str | None] = (
            [int(d) for d in t.ShapeAsNumpy()] if t.ShapeLength() else []
        )
        size = tensor_bytes(shape, _itemsize(types.get(t.Type(), "?")))
        if largest is None or size > largest[0]:
            largest = (size, (t.Name() or b"").decode(errors="replace"))
        buffer = t.Buffer()
        if 0 < buffer < model.BuffersLength() and model.Buffers(buffer).DataLength() > 0:
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


def _itemsize(type_name: str) -> int:
    try:
        return int(np.dtype(type_name).itemsize)
    except TypeError:  # string, resource, variant, int4: count a byte
        return 1
