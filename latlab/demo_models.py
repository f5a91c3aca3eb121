"""Small real CNNs built with ``onnx.helper``, for tests and benchmarks.

Nothing is downloaded: weights are random with a fixed seed. Each block is
Conv -> BatchNormalization -> Relu (a residual Add when the shape allows), the head is
GlobalAveragePool -> Flatten -> Gemm, like the networks NAS spaces produce.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["DEMO_CNNS", "CnnSpec", "make_cnn"]

OPSET = 17
IR_VERSION = 8


@dataclass(frozen=True)
class CnnSpec:
    name: str
    resolution: int = 32
    #: Output channels of each block.
    channels: tuple[int, ...] = (16, 32, 64)
    #: Stride of each block (same length as ``channels``).
    strides: tuple[int, ...] = (1, 2, 2)
    kernel: int = 3
    n_classes: int = 10
    residual: bool = True
    seed: int = 0


#: A spread of sizes, all at least about 1 ms on one core (tests and benchmarks).
DEMO_CNNS: tuple[CnnSpec, ...] = (
    CnnSpec("cnn-s", resolution=96, channels=(16, 32, 32), strides=(1, 1, 2)),
    CnnSpec("cnn-m", resolution=64, channels=(32, 32, 64, 64), strides=(1, 1, 2, 1)),
    CnnSpec("cnn-k5", resolution=64, channels=(32, 64, 64), strides=(1, 2, 1), kernel=5),
    CnnSpec("cnn-l", resolution=96, channels=(32, 64, 64, 128), strides=(1, 2, 1, 2)),
)


def make_cnn(spec: CnnSpec) -> onnx.ModelProto:
    """Build the network of ``spec`` as a checker-clean ONNX model (input ``1x3xRxR``)."""
    if len(spec.channels) != len(spec.strides):
        raise ValueError("channels and strides must have the same length")
    rng = np.random.default_rng(spec.seed)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []

    def init(name: str, array: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(array.astype(np.float32), name))
        return name

    x, c_in, size = "input", 3, spec.resolution
    for i, (c_out, stride) in enumerate(zip(spec.channels, spec.strides, strict=True)):
        k = spec.kernel
        fan_in = c_in * k * k
        w = init(f"b{i}.conv.w", rng.normal(0, (2.0 / fan_in) ** 0.5, (c_out, c_in, k, k)))
        b = init(f"b{i}.conv.b", np.zeros(c_out))
        pad = k // 2
        conv_out = f"b{i}.conv"
        nodes.append(
            helper.make_node(
                "Conv",
                [x, w, b],
                [conv_out],
                name=f"b{i}.conv",
                kernel_shape=[k, k],
                strides=[stride, stride],
                pads=[pad] * 4,
            )
        )
        bn = [
            init(f"b{i}.bn.scale", rng.uniform(0.5, 1.5, c_out)),
            init(f"b{i}.bn.bias", rng.normal(0, 0.1, c_out)),
            init(f"b{i}.bn.mean", rng.normal(0, 0.1, c_out)),
            init(f"b{i}.bn.var", rng.uniform(0.5, 1.5, c_out)),
        ]
        nodes.append(
            helper.make_node("BatchNormalization", [conv_out, *bn], [f"b{i}.bn"], name=f"b{i}.bn")
        )
        nodes.append(helper.make_node("Relu", [f"b{i}.bn"], [f"b{i}.relu"], name=f"b{i}.relu"))
        y = f"b{i}.relu"
        if spec.residual and stride == 1 and c_in == c_out:
            nodes.append(helper.make_node("Add", [x, y], [f"b{i}.add"], name=f"b{i}.add"))
            y = f"b{i}.add"
        x, c_in, size = y, c_out, (size + stride - 1) // stride

    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pool"], name="head.pool"))
    nodes.append(helper.make_node("Flatten", ["pool"], ["flat"], name="head.flatten", axis=1))
    fc_w = init("head.fc.w", rng.normal(0, (1.0 / c_in) ** 0.5, (spec.n_classes, c_in)))
    fc_b = init("head.fc.b", np.zeros(spec.n_classes))
    nodes.append(
        helper.make_node("Gemm", ["flat", fc_w, fc_b], ["logits"], name="head.fc", transB=1)
    )

    graph = helper.make_graph(
        nodes,
        spec.name,
        [
            helper.make_tensor_value_info(
                "input", TensorProto.FLOAT, [1, 3, spec.resolution, spec.resolution]
            )
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, spec.n_classes])],
        initializer=inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="latlab"
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model
