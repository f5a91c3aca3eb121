"""The floors a learned predictor must beat: a linear fit on FLOPs, and a linear model on the
one-hot arch encoding (NAS-Bench-201: 6 edges x 5 ops), both least squares on the training
archs."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from latlab.opkey import graph_cost
from latlab.spaces.nb201 import OPS, Nb201

__all__ = ["flops_linear", "onehot_linear"]


@functools.cache
def _flops(arch: str) -> int:
    """FLOPs of the whole network (building it is the slow part: once per arch)."""
    space = Nb201()
    return graph_cost(space.graph(space.parse(arch))).flops


def flops_linear(
    train_archs: Sequence[str], train_ms: Sequence[float], test_archs: Sequence[str]
) -> np.ndarray:
    def flops(archs: Sequence[str]) -> np.ndarray:
        return np.array([_flops(a) for a in archs], dtype=np.float64)

    slope, intercept = np.polyfit(flops(train_archs), np.asarray(train_ms), 1)
    return np.asarray(slope * flops(test_archs) + intercept)


def _onehot(archs: Sequence[str]) -> np.ndarray:
    space = Nb201()
    rows = np.zeros((len(archs), 6 * len(OPS) + 1))
    rows[:, -1] = 1.0
    for i, a in enumerate(archs):
        for edge, op in enumerate(space.parse(a).vector):
            rows[i, edge * len(OPS) + op] = 1.0
    return rows


def onehot_linear(
    train_archs: Sequence[str], train_ms: Sequence[float], test_archs: Sequence[str]
) -> np.ndarray:
    coef, *_ = np.linalg.lstsq(_onehot(train_archs), np.asarray(train_ms), rcond=None)
    return np.asarray(_onehot(test_archs) @ coef)
