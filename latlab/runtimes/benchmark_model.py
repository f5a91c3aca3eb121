"""benchmark_model: TFLite models timed on an Android phone over adb by TFLite's own binary."""

from __future__ import annotations

from typing import Literal

from latlab.runtimes.spec import ModelFormat, Protocol, RuntimeSpec
from latlab.runtimes.tflite import TFLITE, TfliteConfig

__all__ = ["SPEC", "BenchmarkModelConfig"]


class BenchmarkModelConfig(TfliteConfig):
    runtime: Literal["benchmark_model"] = "benchmark_model"
    #: benchmark_model times itself (its --num_runs/--min_secs): only the fixed protocol.
    protocol: Literal[Protocol.fixed] = Protocol.fixed


SPEC = RuntimeSpec(
    name="benchmark_model",
    model_format=ModelFormat.tflite,
    config=BenchmarkModelConfig,
    runner="latlab.agent.runners.benchmark_model:BenchmarkModelRunner",
    target="adb",
    fusion=TFLITE,
    summary="TFLite models on an Android phone over adb, timed by TFLite's benchmark_model",
)
