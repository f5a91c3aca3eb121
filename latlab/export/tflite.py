"""OpGraph -> TFLite, written directly as a flatbuffer with the schema classes that ship in
``ai_edge_litert`` (no TensorFlow; milliseconds per model).

The model is laid out the way the TFLite converter lays out a float model: NHWC activations,
BatchNormalization folded into the convolution before it, Relu/Relu6 fused into the op that
feeds it alone, explicit PAD where ONNX padding is not TFLite's SAME, depthwise convolutions as
DEPTHWISE_CONV_2D. Weights come from latlab.export.weights, so the TFLite and the ONNX export
of a graph with one seed compute the same function (tests compare the two runtimes' outputs).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np

from latlab.errors import LatlabError
from latlab.export.weights import weight_values
from latlab.graph import OpGraph, OpNode

__all__ = ["TfliteExportError", "to_tflite"]


class TfliteExportError(LatlabError):
    """The graph uses an op or a layout this exporter does not write."""


def _schema() -> Any:
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise TfliteExportError(
            "TFLite export needs ai-edge-litert: pip install 'latlab[tflite]'"
        ) from exc
    return schema_py_generated


def _nhwc(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[0], shape[2], shape[3], shape[1]) if len(shape) == 4 else shape


def _same_pads(size: int, k: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (k - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class _Writer:
    def __init__(self, graph: OpGraph, seed: int) -> None:
        self.s = _schema()
        self.graph = graph
        self.values = weight_values(graph, seed)
        self.tensors: list[Any] = []
        self.buffers: list[Any] = [self.s.BufferT()]  # buffer 0: the empty buffer
        self.codes: dict[int, int] = {}
        self.operators: list[Any] = []
        self.index: dict[str, int] = {}  # OpGraph activation name -> TFLite tensor index
        self.consumers: dict[str, list[OpNode]] = defaultdict(list)
        for node in graph.nodes:
            for t in node.inputs:
                self.consumers[t].append(node)
        self.done: set[str] = set()

    # ------------------------------------------------------------------ tensors

    def _tensor(self, name: str, shape: tuple[int, ...], data: np.ndarray | None = None) -> int:
        t = self.s.TensorT()
        t.name = name
        t.shape = np.array(shape, dtype=np.int32)
        t.type = (
            self.s.TensorType.FLOAT32
            if data is None or data.dtype == np.float32
            else self.s.TensorType.INT32
        )
        if data is not None:
            buffer = self.s.BufferT()
            buffer.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), dtype=np.uint8)
            self.buffers.append(buffer)
            t.buffer = len(self.buffers) - 1
        self.tensors.append(t)
        return len(self.tensors) - 1

    def const(self, name: str, data: np.ndarray) -> int:
        return self._tensor(name, tuple(data.shape), data)

    def activation(self, name: str) -> int:
        if name not in self.index:
            self.index[name] = self._tensor(name, _nhwc(self.graph.spec(name).shape))
        return self.index[name]

    def op(
        self,
        code: int,
        inputs: list[int],
        outputs: list[int],
        options_type: int = 0,
        options: Any = None,
    ) -> None:
        if code not in self.codes:
            self.codes[code] = len(self.codes)
        o = self.s.OperatorT()
        o.opcodeIndex = self.codes[code]
        o.inputs = np.array(inputs, dtype=np.int32)
        o.outputs = np.array(outputs, dtype=np.int32)
        o.builtinOptionsType = options_type
        o.builtinOptions = options
        self.operators.append(o)

    # ------------------------------------------------------------------ fusion

    def _sole_consumer(self, tensor: str, *op_types: str) -> OpNode | None:
        users = self.consumers.get(tensor, [])
        if len(users) == 1 and users[0].op_type in op_types and tensor not in self.graph.outputs:
            return users[0]
        return None

    def _fused_activation(self, tensor: str) -> tuple[int, str]:
        """(activation code, output tensor) for a Relu/Relu6 that alone consumes ``tensor``."""
        act = self._sole_consumer(tensor, "Relu", "Clip")
        if act is None:
            return self.s.ActivationFunctionType.NONE, tensor
        if act.op_type == "Relu":
            self.done.add(act.name)
            return self.s.ActivationFunctionType.RELU, act.outputs[0]
        if self._clip_bounds(act) == (0.0, 6.0):
            self.done.add(act.name)
            return self.s.ActivationFunctionType.RELU6, act.outputs[0]
        return self.s.ActivationFunctionType.NONE, tensor

    def _clip_bounds(self, node: OpNode) -> tuple[float, float]:
        def bound(position: int, default: float) -> float:
            if len(node.inputs) > position and node.inputs[position]:
                value = self.graph.spec(node.inputs[position]).value
                if value is None:
                    raise TfliteExportError(f"{node.name}: Clip bounds must be constants")
                return value
            return default

        return bound(1, float("-inf")), bound(2, float("inf"))

    def _bn_affine(self, bn: OpNode) -> tuple[np.ndarray, np.ndarray]:
        scale, bias, mean, var = (self.values[t] for t in bn.inputs[1:5])
        eps = float(bn.attr("epsilon", 1e-5))
        mul = scale / np.sqrt(var + eps)
        return mul.astype(np.float32), (bias - mean * mul).astype(np.float32)

    # ------------------------------------------------------------------ ops

    def write(self, node: OpNode) -> None:
        handler = getattr(self, f"_op_{node.op_type}", None)
        if handler is None:
            raise TfliteExportError(f"op {node.op_type} ({node.name}) has no TFLite mapping yet")
        handler(node)

    def _padding(self, node: OpNode, x: str, count_include_pad: bool = True) -> tuple[int, int]:
        """(padding code, input tensor index): SAME, VALID, or an explicit PAD then VALID."""
        _, _, h, w = self.graph.spec(x).shape
        k = node.attr("kernel_shape")
        strides = node.attr("strides", (1, 1))
        dil = node.attr("dilations", (1, 1))
        pads = node.attr("pads", (0, 0, 0, 0))
        if not any(pads):
            return self.s.Padding.VALID, self.activation(x)
        same = (*_same_pads(h, k[0], strides[0], dil[0]), *_same_pads(w, k[1], strides[1], dil[1]))
        matches_same = (pads[0], pads[2], pads[1], pads[3]) == same
        if node.op_type == "AveragePool":
            # TFLite's SAME average pool leaves padding out of the count
            if matches_same and not count_include_pad:
                return self.s.Padding.SAME, self.activation(x)
            raise TfliteExportError(f"{node.name}: average pool padding {pads} has no TFLite form")
        if matches_same:
            return self.s.Padding.SAME, self.activation(x)
        n, c, _, _ = self.graph.spec(x).shape
        padded = self._tensor(
            f"{node.name}/pad", (n, h + pads[0] + pads[2], w + pads[1] + pads[3], c)
        )
        paddings = np.array(
            [[0, 0], [pads[0], pads[2]], [pads[1], pads[3]], [0, 0]], dtype=np.int32
        )
        self.op(
            self.s.BuiltinOperator.PAD,
            [self.activation(x), self.const(f"{node.name}/paddings", paddings)],
            [padded],
        )
        return self.s.Padding.VALID, padded

    def _op_Conv(self, node: OpNode) -> None:
        x = node.inputs[0]
        w = self.values[node.inputs[1]]
        b = (
            self.values[node.inputs[2]]
            if len(node.inputs) > 2 and node.inputs[2]
            else np.zeros(w.shape[0], np.float32)
        )
        out = node.outputs[0]
        bn = self._sole_consumer(out, "BatchNormalization")
        if bn is not None:
            mul, add = self._bn_affine(bn)
            w = w * mul[:, None, None, None]
            b = b * mul + add
            out = bn.outputs[0]
            self.done.add(bn.name)
        act, out = self._fused_activation(out)
        padding, x_index = self._padding(node, x)
        strides = node.attr("strides", (1, 1))
        dil = node.attr("dilations", (1, 1))
        groups = int(node.attr("group", 1))
        c_in = self.graph.spec(x).shape[1]
        if groups == 1:
            opts = self.s.Conv2DOptionsT()
            code, opts_type = self.s.BuiltinOperator.CONV_2D, self.s.BuiltinOptions.Conv2DOptions
            filt = w.transpose(0, 2, 3, 1)  # OIHW -> OHWI
        elif groups == c_in == w.shape[0]:
            opts = self.s.DepthwiseConv2DOptionsT()
            opts.depthMultiplier = 1
            code, opts_type = (
                self.s.BuiltinOperator.DEPTHWISE_CONV_2D,
                self.s.BuiltinOptions.DepthwiseConv2DOptions,
            )
            filt = w.transpose(1, 2, 3, 0)  # (C, 1, kh, kw) -> (1, kh, kw, C)
        elif w.shape[1] * groups == c_in:
            # a grouped conv is CONV_2D with a filter of c_in / groups channels (TFLite 2.9+)
            opts = self.s.Conv2DOptionsT()
            code, opts_type = self.s.BuiltinOperator.CONV_2D, self.s.BuiltinOptions.Conv2DOptions
            filt = w.transpose(0, 2, 3, 1)  # OIHW -> OHWI, I = c_in / groups
        else:
            raise TfliteExportError(
                f"{node.name}: grouped convolution (groups={groups}) has no TFLite form"
            )
        opts.padding = padding
        opts.strideH, opts.strideW = strides
        opts.dilationHFactor, opts.dilationWFactor = dil
        opts.fusedActivationFunction = act
        inputs = [
            x_index,
            self.const(f"{node.name}/filter", np.ascontiguousarray(filt, np.float32)),
            self.const(f"{node.name}/bias", b.astype(np.float32)),
        ]
        self.op(code, inputs, [self.activation(out)], opts_type, opts)

    def _op_BatchNormalization(self, node: OpNode) -> None:
        mul, add = self._bn_affine(node)
        scaled = self._tensor(f"{node.name}/mul", _nhwc(self.graph.spec(node.outputs[0]).shape))
        self.op(
            self.s.BuiltinOperator.MUL,
            [self.activation(node.inputs[0]), self.const(f"{node.name}/scale", mul)],
            [scaled],
            self.s.BuiltinOptions.MulOptions,
            self.s.MulOptionsT(),
        )
        act, out = self._fused_activation(node.outputs[0])
        opts = self.s.AddOptionsT()
        opts.fusedActivationFunction = act
        self.op(
            self.s.BuiltinOperator.ADD,
            [scaled, self.const(f"{node.name}/shift", add)],
            [self.activation(out)],
            self.s.BuiltinOptions.AddOptions,
            opts,
        )

    def _op_Relu(self, node: OpNode) -> None:
        self.op(
            self.s.BuiltinOperator.RELU,
            [self.activation(node.inputs[0])],
            [self.activation(node.outputs[0])],
        )

    def _op_Clip(self, node: OpNode) -> None:
        if self._clip_bounds(node) != (0.0, 6.0):
            raise TfliteExportError(f"{node.name}: only Clip(0, 6) (ReLU6) has a TFLite form")
        self.op(
            self.s.BuiltinOperator.RELU6,
            [self.activation(node.inputs[0])],
            [self.activation(node.outputs[0])],
        )

    def _op_Add(self, node: OpNode) -> None:
        self.op(
            self.s.BuiltinOperator.ADD,
            [self.activation(t) for t in node.inputs],
            [self.activation(node.outputs[0])],
            self.s.BuiltinOptions.AddOptions,
            self.s.AddOptionsT(),
        )

    def _op_Mul(self, node: OpNode) -> None:
        """By a constant, or by a per-channel gate (broadcast over H and W)."""
        x, c = node.inputs
        factor = self.const(c, self.values[c]) if c in self.graph.weights else self.activation(c)
        self.op(
            self.s.BuiltinOperator.MUL,
            [self.activation(x), factor],
            [self.activation(node.outputs[0])],
            self.s.BuiltinOptions.MulOptions,
            self.s.MulOptionsT(),
        )

    def _op_HardSwish(self, node: OpNode) -> None:
        self.op(
            self.s.BuiltinOperator.HARD_SWISH,
            [self.activation(node.inputs[0])],
            [self.activation(node.outputs[0])],
        )

    def _op_HardSigmoid(self, node: OpNode) -> None:
        """``relu6(x + 3) / 6`` as TFLite converters write it: ADD (ReLU6 fused), MUL."""
        alpha, beta = float(node.attr("alpha", 0.2)), float(node.attr("beta", 0.5))
        if not (np.isclose(alpha, 1 / 6) and np.isclose(beta, 0.5)):
            raise TfliteExportError(f"{node.name}: only HardSigmoid(1/6, 0.5) has a TFLite form")
        shape = _nhwc(self.graph.spec(node.outputs[0]).shape)
        shifted = self._tensor(f"{node.name}/relu6", shape)
        opts = self.s.AddOptionsT()
        opts.fusedActivationFunction = self.s.ActivationFunctionType.RELU6
        self.op(
            self.s.BuiltinOperator.ADD,
            [
                self.activation(node.inputs[0]),
                self.const(f"{node.name}/three", np.array(3.0, np.float32)),
            ],
            [shifted],
            self.s.BuiltinOptions.AddOptions,
            opts,
        )
        self.op(
            self.s.BuiltinOperator.MUL,
            [shifted, self.const(f"{node.name}/sixth", np.array(1 / 6, np.float32))],
            [self.activation(node.outputs[0])],
            self.s.BuiltinOptions.MulOptions,
            self.s.MulOptionsT(),
        )

    def _op_AveragePool(self, node: OpNode) -> None:
        count_include_pad = bool(node.attr("count_include_pad", 0))
        padding, x_index = self._padding(node, node.inputs[0], count_include_pad)
        opts = self.s.Pool2DOptionsT()
        opts.padding = padding
        opts.strideH, opts.strideW = node.attr("strides", (1, 1))
        opts.filterHeight, opts.filterWidth = node.attr("kernel_shape")
        self.op(
            self.s.BuiltinOperator.AVERAGE_POOL_2D,
            [x_index],
            [self.activation(node.outputs[0])],
            self.s.BuiltinOptions.Pool2DOptions,
            opts,
        )

    def _op_GlobalAveragePool(self, node: OpNode) -> None:
        opts = self.s.ReducerOptionsT()
        opts.keepDims = True
        axes = self.const(f"{node.name}/axes", np.array([1, 2], dtype=np.int32))
        self.op(
            self.s.BuiltinOperator.MEAN,
            [self.activation(node.inputs[0]), axes],
            [self.activation(node.outputs[0])],
            self.s.BuiltinOptions.ReducerOptions,
            opts,
        )

    def _op_Flatten(self, node: OpNode) -> None:
        shape = self.graph.spec(node.inputs[0]).shape
        if len(shape) == 4 and shape[2:] != (1, 1):
            raise TfliteExportError(
                f"{node.name}: Flatten of a {shape} map needs a transpose; not written yet"
            )
        out_shape = self.graph.spec(node.outputs[0]).shape
        new_shape = self.const(f"{node.name}/shape", np.array(out_shape, dtype=np.int32))
        opts = self.s.ReshapeOptionsT()
        opts.newShape = list(out_shape)
        self.op(
            self.s.BuiltinOperator.RESHAPE,
            [self.activation(node.inputs[0]), new_shape],
            [self.activation(node.outputs[0])],
            self.s.BuiltinOptions.ReshapeOptions,
            opts,
        )

    def _op_Gemm(self, node: OpNode) -> None:
        if (
            node.attr("transA", 0)
            or float(node.attr("alpha", 1.0)) != 1.0
            or float(node.attr("beta", 1.0)) != 1.0
        ):
            raise TfliteExportError(
                f"{node.name}: only Gemm with transA=0, alpha=beta=1 is supported"
            )
        w = self.values[node.inputs[1]]
        w = w if node.attr("transB", 0) else w.T
        b = (
            self.values[node.inputs[2]]
            if len(node.inputs) > 2
            else np.zeros(w.shape[0], np.float32)
        )
        act, out = self._fused_activation(node.outputs[0])
        opts = self.s.FullyConnectedOptionsT()
        opts.fusedActivationFunction = act
        inputs = [
            self.activation(node.inputs[0]),
            self.const(f"{node.name}/weights", np.ascontiguousarray(w, np.float32)),
            self.const(f"{node.name}/bias", b),
        ]
        self.op(
            self.s.BuiltinOperator.FULLY_CONNECTED,
            inputs,
            [self.activation(out)],
            self.s.BuiltinOptions.FullyConnectedOptions,
            opts,
        )

    # ------------------------------------------------------------------ model

    def model_bytes(self) -> bytes:
        import flatbuffers

        inputs = [self.activation(t) for t in self.graph.inputs]
        for node in self.graph.nodes:
            if node.name not in self.done:
                self.write(node)
                self.done.add(node.name)
        sub = self.s.SubGraphT()
        sub.tensors = self.tensors
        sub.inputs = np.array(inputs, dtype=np.int32)
        sub.outputs = np.array([self.index[t] for t in self.graph.outputs], dtype=np.int32)
        sub.operators = self.operators
        sub.name = self.graph.name
        codes = []
        for code in sorted(self.codes, key=self.codes.__getitem__):
            oc = self.s.OperatorCodeT()
            oc.builtinCode = code
            oc.deprecatedBuiltinCode = min(code, 127)
            oc.version = 1
            codes.append(oc)
        model = self.s.ModelT()
        model.version = 3
        model.operatorCodes = codes
        model.subgraphs = [sub]
        model.buffers = self.buffers
        model.description = "latlab export"
        builder = flatbuffers.Builder(1024)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())


def to_tflite(graph: OpGraph, seed: int = 0) -> bytes:
    """The graph as a float32 TFLite flatbuffer (NHWC input); weights as ``to_onnx(graph, seed)``."""
    return _Writer(graph, seed).model_bytes()
