"""A graph as the model file a runtime reads: ONNX or TFLite, by format."""

from __future__ import annotations

from latlab.export.onnx import to_onnx
from latlab.export.tflite import to_tflite
from latlab.graph import OpGraph
from latlab.runtimes import ModelFormat

__all__ = ["model_file"]


def model_file(graph: OpGraph, fmt: ModelFormat, seed: int = 0) -> bytes:
    """The bytes of ``graph`` in ``fmt`` (the same seeded weights either way)."""
    if fmt is ModelFormat.tflite:
        return to_tflite(graph, seed=seed)
    data: bytes = to_onnx(graph, seed=seed).SerializeToString()
    return data
