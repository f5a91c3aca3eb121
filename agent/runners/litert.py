"""The LiteRT runner: TFLite models timed with the LiteRT interpreter (``ai-edge-litert``, or
``tflite-runtime`` where that is what the device has), XNNPACK on or off, the same
measurement protocol and statistics as the onnxruntime runner.

The Python interpreter has no op profiler: per-op TFLite times come from ``benchmark_model``
(the adb runner) or from one-kernel micro-models (the LUT builder).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from latlab.agent.errors import RunnerError, RunnerUnavailable
from latlab.agent.inputs import random_array
from latlab.agent.runners.base import LoadedModel, ProtocolRunner
from latlab.runtimes.litert import LiteRtConfig
from latlab.schemas import RuntimeInfo
from latlab.tflite_summary import is_tflite

try:
    from ai_edge_litert import interpreter as _litert

    _PACKAGE = "ai-edge-litert"
except ImportError:  # the older wheel, for devices that only have it (needs numpy < 2)
    from tflite_runtime import interpreter as _litert

    _PACKAGE = "tflite-runtime"

__all__ = ["LiteRtRunner"]


def _version() -> str:
    from importlib.metadata import version

    return f"{_PACKAGE} {version(_PACKAGE)}"


class LiteRtRunner(ProtocolRunner[LiteRtConfig, LoadedModel]):
    name = "litert"
    config_type = LiteRtConfig

    def info(self) -> RuntimeInfo:
        return RuntimeInfo(name=self.name, version=self.version(), providers=["XNNPACK", "builtin"])

    def version(self) -> str:
        return _version()

    def load(self, model_path: Path, config: LiteRtConfig) -> LoadedModel:
        if config.use_gpu:
            raise RunnerUnavailable(
                "LiteRT runs on the CPU here (XNNPACK or builtin kernels): the Python wheel has "
                "no GPU delegate; time on a phone's GPU with the benchmark_model runtime"
            )
        data = model_path.read_bytes()
        if not is_tflite(data):
            raise RunnerError("not a TFLite model (no TFL3 flatbuffer identifier)")
        interpreter = _interpreter(data, config)
        shapes = _set_inputs(interpreter, config.seed)
        # invoke() runs on the CPU and returns when the outputs are written
        return LoadedModel(
            run_once=partial(_invoke, interpreter), input_shapes=shapes, provider=config.provider
        )


def _interpreter(data: bytes, config: LiteRtConfig) -> Any:
    resolver = (
        _litert.OpResolverType.AUTO
        if config.xnnpack
        else _litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    try:
        interpreter = _litert.Interpreter(
            model_content=data,
            num_threads=config.threads,
            experimental_op_resolver_type=resolver,
        )
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:  # LiteRT's own errors, translated here
        raise RunnerError(f"LiteRT cannot load the model: {exc}") from exc
    return interpreter


def _set_inputs(interpreter: Any, seed: int) -> dict[str, list[int]]:
    rng = np.random.default_rng(seed)
    shapes: dict[str, list[int]] = {}
    for detail in interpreter.get_input_details():
        shape = [int(d) if d > 0 else 1 for d in detail["shape"]]
        interpreter.set_tensor(detail["index"], random_array(rng, detail["dtype"], shape))
        shapes[detail["name"]] = shape
    return shapes


def _invoke(interpreter: Any) -> object:
    try:
        interpreter.invoke()
    except RuntimeError as exc:
        raise RunnerError(f"LiteRT failed to run the model: {exc}") from exc
    return None
