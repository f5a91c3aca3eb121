"""Deterministic random weights for exported graphs: the same seed gives the same tensors in
every format, so the ONNX and TFLite exports of one arch compute the same function."""

from __future__ import annotations

import hashlib

import numpy as np

from latlab.graph import OpGraph, OpNode

__all__ = ["weight_values"]


def _rng(seed: int, tensor: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}:{tensor}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def weight_values(graph: OpGraph, seed: int) -> dict[str, np.ndarray]:
    """A value for every weight tensor: He-normal conv/linear weights, small biases,
    BatchNorm statistics near identity, and the fixed value of scalar constants.
    Each tensor's values depend only on (seed, tensor name)."""
    roles: dict[str, tuple[OpNode, int]] = {}
    for node in graph.nodes:
        for position, name in enumerate(node.inputs):
            if name in graph.weights:
                roles.setdefault(name, (node, position))
    values: dict[str, np.ndarray] = {}
    for name in sorted(graph.weights):
        spec = graph.tensors[name]
        if spec.value is not None:
            values[name] = np.array(spec.value, dtype=np.float32)
            continue
        node, position = roles[name]
        rng = _rng(seed, name)
        shape = spec.shape
        if node.op_type == "BatchNormalization":
            low, high = {1: (0.5, 1.5), 2: (-0.1, 0.1), 3: (-0.1, 0.1), 4: (0.5, 1.5)}[position]
            values[name] = rng.uniform(low, high, shape).astype(np.float32)
        elif position == 1 and len(shape) >= 2:  # Conv / Gemm weight
            fan_in = int(np.prod(shape[1:]))
            values[name] = rng.normal(0.0, (2.0 / fan_in) ** 0.5, shape).astype(np.float32)
        else:  # biases and anything else
            values[name] = rng.normal(0.0, 0.01, shape).astype(np.float32)
    return values
