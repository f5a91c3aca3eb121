"""OpGraph -> tf.keras model, for cross-checking latlab's TFLite writer against TensorFlow's
own converter (tests/test_export_tflite_tf.py). Needs TensorFlow; import it only after
``pytest.importorskip("tensorflow")``.

Each ONNX node becomes the Keras layer a person porting the PyTorch model would write: no
fusion, no folding (that is the converter's job, and what the cross-check is about). Weights
are the exporters' own (latlab.export.weights), so the Keras model computes the function that
``to_onnx(graph, seed)`` and ``to_tflite(graph, seed)`` compute. Activations are NHWC.

Padding is the one translation that needs a choice: Keras has only ``"same"`` and ``"valid"``,
so a convolution whose symmetric ONNX padding equals TensorFlow's SAME padding for that input
is written ``padding="same"``, and any other padding as ``ZeroPadding2D`` then ``"valid"``
(what keras ports of torchvision models do). An average pool that leaves padding out of its
count is TensorFlow's SAME pool; one that counts it has no Keras form and is refused.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import tensorflow as tf

from latlab.export.weights import weight_values
from latlab.graph import OpGraph, OpNode

__all__ = ["KerasBuildError", "keras_model"]

keras = tf.keras


class KerasBuildError(ValueError):
    """The graph uses an op or a layout this test builder does not translate."""


def _same_pads(size: int, k: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's SAME padding (before, after) along one axis."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (k - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class _Builder:
    def __init__(self, graph: OpGraph, seed: int) -> None:
        self.graph = graph
        self.values = weight_values(graph, seed)
        self.t: dict[str, Any] = {}  # OpGraph tensor name -> Keras tensor

    def _name(self, node: OpNode, suffix: str = "") -> str:
        return (node.name + suffix).replace(".", "_").replace("/", "_")

    def _padding(self, node: OpNode, x: Any) -> tuple[str, Any]:
        """("same" | "valid", input): ZeroPadding2D where the ONNX pads are not SAME."""
        _, _, h, w = self.graph.spec(node.inputs[0]).shape
        k = node.attr("kernel_shape")
        strides = node.attr("strides", (1, 1))
        dil = node.attr("dilations", (1, 1))
        top, left, bottom, right = node.attr("pads", (0, 0, 0, 0))
        if not any((top, left, bottom, right)):
            return "valid", x
        same = (*_same_pads(h, k[0], strides[0], dil[0]), *_same_pads(w, k[1], strides[1], dil[1]))
        if (top, bottom, left, right) == same:
            return "same", x
        if node.op_type != "Conv":
            raise KerasBuildError(f"{node.name}: padding {(top, left, bottom, right)} for a pool")
        pad = keras.layers.ZeroPadding2D(
            ((top, bottom), (left, right)), name=self._name(node, "_pad")
        )
        return "valid", pad(x)

    # ------------------------------------------------------------------ ops

    def op_Conv(self, node: OpNode, x: Any) -> Any:
        w = self.values[node.inputs[1]]  # OIHW
        bias = self.values[node.inputs[2]] if len(node.inputs) > 2 and node.inputs[2] else None
        groups = int(node.attr("group", 1))
        c_in = self.graph.spec(node.inputs[0]).shape[1]
        padding, x = self._padding(node, x)
        common: dict[str, Any] = {
            "kernel_size": tuple(node.attr("kernel_shape")),
            "strides": tuple(node.attr("strides", (1, 1))),
            "padding": padding,
            "dilation_rate": tuple(node.attr("dilations", (1, 1))),
            "use_bias": bias is not None,
            "name": self._name(node),
        }
        if groups == 1:
            layer = keras.layers.Conv2D(w.shape[0], **common)
            kernel = w.transpose(2, 3, 1, 0)  # OIHW -> HWIO
        elif groups == c_in == w.shape[0]:
            layer = keras.layers.DepthwiseConv2D(depth_multiplier=1, **common)
            kernel = w.transpose(2, 3, 0, 1)  # (C, 1, kh, kw) -> (kh, kw, C, 1)
        else:
            raise KerasBuildError(f"{node.name}: grouped convolution (groups={groups})")
        y = layer(x)
        layer.set_weights([kernel] if bias is None else [kernel, bias])
        return y

    def op_BatchNormalization(self, node: OpNode, x: Any) -> Any:
        scale, bias, mean, var = (self.values[t] for t in node.inputs[1:5])
        layer = keras.layers.BatchNormalization(
            epsilon=float(node.attr("epsilon", 1e-5)), name=self._name(node)
        )
        y = layer(x, training=False)
        layer.set_weights([scale, bias, mean, var])
        return y

    def op_Relu(self, node: OpNode, x: Any) -> Any:
        return keras.layers.ReLU(name=self._name(node))(x)

    def op_Clip(self, node: OpNode, x: Any) -> Any:
        bounds = tuple(self.graph.spec(t).value for t in node.inputs[1:3])
        if bounds != (0.0, 6.0):
            raise KerasBuildError(f"{node.name}: only Clip(0, 6) (ReLU6), got {bounds}")
        return keras.layers.ReLU(max_value=6.0, name=self._name(node))(x)

    def op_Add(self, node: OpNode, a: Any, b: Any) -> Any:
        return keras.layers.Add(name=self._name(node))([a, b])

    def op_Mul(self, node: OpNode, x: Any) -> Any:
        factor = float(self.values[node.inputs[1]])
        return keras.layers.Rescaling(factor, name=self._name(node))(x)

    def op_AveragePool(self, node: OpNode, x: Any) -> Any:
        if any(node.attr("pads", (0, 0, 0, 0))) and node.attr("count_include_pad", 0):
            raise KerasBuildError(f"{node.name}: a padded average pool that counts the padding")
        padding, x = self._padding(node, x)
        return keras.layers.AveragePooling2D(
            tuple(node.attr("kernel_shape")),
            tuple(node.attr("strides", (1, 1))),
            padding=padding,
            name=self._name(node),
        )(x)

    def op_GlobalAveragePool(self, node: OpNode, x: Any) -> Any:
        return keras.layers.GlobalAveragePooling2D(keepdims=True, name=self._name(node))(x)

    def op_Flatten(self, node: OpNode, x: Any) -> Any:
        if self.graph.spec(node.inputs[0]).shape[2:] not in ((), (1, 1)):
            raise KerasBuildError(f"{node.name}: Flatten of a spatial map (NCHW order)")
        return keras.layers.Flatten(name=self._name(node))(x)

    def op_Gemm(self, node: OpNode, x: Any) -> Any:
        if (
            node.attr("transA", 0)
            or node.attr("alpha", 1.0) != 1.0
            or node.attr("beta", 1.0) != 1.0
        ):
            raise KerasBuildError(f"{node.name}: only Gemm with transA=0, alpha=beta=1")
        w = self.values[node.inputs[1]]
        w = w.T if node.attr("transB", 0) else w  # -> (in, out)
        layer = keras.layers.Dense(w.shape[1], name=self._name(node))
        y = layer(x)
        bias = self.values[node.inputs[2]] if len(node.inputs) > 2 else np.zeros(w.shape[1])
        layer.set_weights([w, bias.astype(np.float32)])
        return y

    # ------------------------------------------------------------------ model

    def build(self) -> Any:
        [name] = self.graph.inputs
        n, c, h, w = self.graph.spec(name).shape
        inp = keras.Input((h, w, c), batch_size=n, name=name.replace(".", "_"))
        self.t[name] = inp
        for node in self.graph.nodes:
            handler = getattr(self, f"op_{node.op_type}", None)
            if handler is None:
                raise KerasBuildError(f"op {node.op_type} ({node.name}) has no Keras mapping")
            args = [self.t[i] for i in node.inputs if i and i not in self.graph.weights]
            self.t[node.outputs[0]] = handler(node, *args)
        return keras.Model(inp, [self.t[o] for o in self.graph.outputs], name=self.graph.name)


def keras_model(graph: OpGraph, seed: int = 0) -> Any:
    """The graph as a tf.keras functional model (NHWC input) with ``to_tflite(graph, seed)``'s
    weights."""
    return _Builder(graph, seed).build()
