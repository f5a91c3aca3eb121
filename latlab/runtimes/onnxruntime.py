"""onnxruntime: ONNX models on the CPU, CUDA or TensorRT execution provider."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from latlab.runtimes.spec import FusionRules, ModelFormat, ProtocolConfig, RuntimeSpec

__all__ = ["ONNXRUNTIME_CPU", "SPEC", "ExecutionProvider", "GraphOptimization", "OnnxRuntimeConfig"]


class ExecutionProvider(StrEnum):
    cpu = "CPUExecutionProvider"
    cuda = "CUDAExecutionProvider"
    tensorrt = "TensorrtExecutionProvider"


class GraphOptimization(StrEnum):
    disabled = "disabled"
    basic = "basic"
    extended = "extended"
    all = "all"


class OnnxRuntimeConfig(ProtocolConfig):
    runtime: Literal["onnxruntime"] = "onnxruntime"
    execution_provider: ExecutionProvider = ExecutionProvider.cpu
    graph_optimization: GraphOptimization = GraphOptimization.all

    @property
    def provider(self) -> str:
        return self.execution_provider.value


#: onnxruntime's CPU execution provider at graph optimisation "all" (checked against its
#: profiler on NB201 networks: one kernel per rule kernel, besides layout reorders): BN folded
#: into Conv, Conv+activation fused, on x86 the NCHWc transformer folds an Add that consumes a
#: conv output into the conv ("sum" fusion); CSE merges duplicates before fusing. Known gap:
#: a chain of several ``x * constant`` after a conv (NB201's cut-off cells, never sampled) folds
#: into the conv one Mul after another; the rules fold the first.
ONNXRUNTIME_CPU = FusionRules(
    name="onnxruntime",
    chains=(
        ("Conv", "BatchNormalization", "Add", "Relu"),
        ("Conv", "BatchNormalization", "Add"),
        ("Conv", "BatchNormalization", "Relu"),
        ("Conv", "BatchNormalization", "Clip"),
        # a multiplication by a constant folds into the conv's weights (NB201's cut-off cell)
        ("Conv", "BatchNormalization", "Mul"),
        ("Conv", "BatchNormalization"),
        ("Conv", "Add", "Relu"),
        ("Conv", "Add"),
        ("Conv", "Relu"),
        ("Conv", "Clip"),
        ("Conv", "Mul"),
        ("Gemm", "Relu"),
        # a BatchNormalization no conv absorbs runs as a 1x1 depthwise conv, its ReLU fused
        ("BatchNormalization", "Relu"),
    ),
)

SPEC = RuntimeSpec(
    name="onnxruntime",
    model_format=ModelFormat.onnx,
    config=OnnxRuntimeConfig,
    runner="latlab.agent.runners.ort:OrtRunner",
    fusion=ONNXRUNTIME_CPU,
    summary="ONNX models with onnxruntime (CPU, CUDA or TensorRT execution provider)",
)
