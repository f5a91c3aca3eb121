"""OpGraph -> ONNX with onnx.helper: checker-clean, runnable by onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from latlab.export.weights import weight_values
from latlab.graph import OpGraph

__all__ = ["IR_VERSION", "OPSET", "to_onnx"]

OPSET = 17
IR_VERSION = 8


def _value_info(graph: OpGraph, name: str) -> onnx.ValueInfoProto:
    spec = graph.tensors[name]
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(spec.dtype))
    return helper.make_tensor_value_info(name, elem, list(spec.shape))


def to_onnx(graph: OpGraph, seed: int = 0) -> onnx.ModelProto:
    """The graph as an ONNX model; weights random with ``seed`` (latlab.export.weights)."""
    values = weight_values(graph, seed)
    initializers = [numpy_helper.from_array(values[name], name) for name in sorted(graph.weights)]
    nodes = []
    for n in graph.nodes:
        node = helper.make_node(n.op_type, list(n.inputs), list(n.outputs), name=n.name)
        node.attribute.extend(helper.make_attribute(k, v) for k, v in n.attrs)
        nodes.append(node)
    activations = {t for n in graph.nodes for t in n.outputs} - set(graph.outputs)
    proto = helper.make_graph(
        nodes,
        graph.name,
        [_value_info(graph, t) for t in graph.inputs],
        [_value_info(graph, t) for t in graph.outputs],
        initializer=initializers,
        value_info=[_value_info(graph, t) for t in sorted(activations)],
    )
    model = helper.make_model(
        proto, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="latlab"
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model
