"""The floors a learned predictor must beat, as the benchmarks and the issue state them: a
linear fit on the network's FLOPs, and a linear model on the one-hot arch encoding
(NAS-Bench-201: 6 edges x 5 ops), both plain least squares on the training archs. (The floor
guard inside training fits its own floors fold by fold: predictors.linear.)"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from latlab.opkey import graph_cost
from latlab.spaces import GraphForm
from latlab.spaces.nb201 import Nb201

__all__ = ["flops_linear", "onehot_linear"]


@functools.cache
def _flops(arch: str, form: GraphForm) -> int:
    """FLOPs of the whole network in ``form`` (building it is the slow part: once per arch)."""
    space = Nb201()
    return graph_cost(space.graph(space.parse(arch), form)).flops


def flops_linear(
    train_archs: Sequence[str],
    train_ms: Sequence[float],
    test_archs: Sequence[str],
    form: GraphForm = GraphForm.pruned,
) -> np.ndarray:
    def flops(archs: Sequence[str]) -> np.ndarray:
        return np.array([_flops(a, form) for a in archs], dtype=np.float64)

    slope, intercept = np.polyfit(flops(train_archs), np.asarray(train_ms), 1)
    return np.asarray(slope * flops(test_archs) + intercept)


def _onehot(archs: Sequence[str]) -> np.ndarray:
    space = Nb201()
    rows = np.array([space.encoding(space.parse(a)) for a in archs]).reshape(len(archs), -1)
    return np.column_stack([rows, np.ones(len(archs))])


def onehot_linear(
    train_archs: Sequence[str], train_ms: Sequence[float], test_archs: Sequence[str]
) -> np.ndarray:
    coef, *_ = np.linalg.lstsq(_onehot(train_archs), np.asarray(train_ms), rcond=None)
    return np.asarray(_onehot(test_archs) @ coef)
