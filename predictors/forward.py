"""The GCN's forward pass in numpy: what the server runs (no torch on the serving path).

Matches predictors/gcn.py in evaluation mode (no dropout); a test checks the two agree.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from latlab.predictors.features import Batch

__all__ = ["LAYER_NORM_EPS", "gcn_forward"]

LAYER_NORM_EPS = 1e-5


def gcn_forward(weights: Mapping[str, np.ndarray], layers: int, data: Batch) -> np.ndarray:
    """The network's raw output (a normalised target) for every graph of the batch."""
    b, n, _ = data.x.shape
    h = data.x
    for i in range(layers):
        w = weights[f"convs.{i}.weight"]
        messages = np.concatenate([np.matmul(data.adj_live, h), np.matmul(data.adj, h)], axis=-1)
        h = (messages.reshape(b * n, -1) @ w).reshape(b, n, -1) + weights[f"convs.{i}.bias"]
        mean = h.mean(axis=-1, keepdims=True)
        var = h.var(axis=-1, keepdims=True)
        h = (h - mean) / np.sqrt(var + LAYER_NORM_EPS)
        h = h * weights[f"norms.{i}.weight"] + weights[f"norms.{i}.bias"]
        np.maximum(h, 0.0, out=h)
    out: np.ndarray = h[:, 0] @ weights["head.weight"].T + weights["head.bias"]
    return out[:, 0]
