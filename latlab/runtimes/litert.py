"""LiteRT: TFLite models with the LiteRT interpreter on the agent's CPU (``ai-edge-litert``, or
``tflite-runtime`` where that is what the device has), XNNPACK on or off."""

from __future__ import annotations

from typing import Literal

from latlab.runtimes.spec import ModelFormat, RuntimeSpec
from latlab.runtimes.tflite import TFLITE, TfliteConfig

__all__ = ["SPEC", "LiteRtConfig"]


class LiteRtConfig(TfliteConfig):
    runtime: Literal["litert"] = "litert"


SPEC = RuntimeSpec(
    name="litert",
    model_format=ModelFormat.tflite,
    config=LiteRtConfig,
    runner="latlab.agent.runners.litert:LiteRtRunner",
    fusion=TFLITE,
    summary="TFLite models with the LiteRT interpreter (XNNPACK or builtin kernels)",
)
