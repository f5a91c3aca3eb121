"""Accuracy metrics: written-out cases and properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from latlab.metrics import kendall, regression_metrics, spearman


def test_spearman_of_written_out_rankings() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ties share their mean rank: ranks (0, 1.5, 1.5, 3) vs (0, 1, 2, 3)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486832980505138)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3])) and math.isnan(spearman([1], [2]))


@given(st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=50))
def test_spearman_sees_only_the_order(values: list[float]) -> None:
    same = spearman(values, values)
    if math.isnan(same):  # all values equal
        assert len(set(values)) == 1
        return
    assert same == pytest.approx(1.0)
    assert spearman(values, [2 * v for v in values]) == pytest.approx(1.0)  # exact in floats
    assert spearman(values, [-v for v in values]) == pytest.approx(-1.0)


def test_kendall_of_written_out_rankings() -> None:
    assert kendall([1, 2, 3, 4], [1, 2, 3, 4]) == pytest.approx(1.0)
    assert kendall([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # one discordant pair of six: (6 - 2 * 1) / 6
    assert kendall([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)


def test_regression_metrics_use_the_nn_meter_convention() -> None:
    m = regression_metrics([1.04, 2.5, 3.0, 3.9], [1.0, 2.0, 3.0, 4.0])
    assert m.n == 4 and m.within_10pct == 0.75 and m.within_5pct == 0.75 and m.within_1pct == 0.25
    assert m.mape == pytest.approx((0.04 + 0.25 + 0 + 0.025) / 4)
    assert m.rmse_ms == pytest.approx(math.sqrt((0.04**2 + 0.5**2 + 0 + 0.1**2) / 4))
    with pytest.raises(ValueError):
        regression_metrics([1.0], [0.0])


def _kendall_by_pairs(x: list[float], y: list[float]) -> float:
    """Tau-b by its definition, every pair compared."""
    n = len(x)
    concordant = discordant = tied_x = tied_y = 0
    for i in range(n):
        for j in range(i + 1, n):
            s = (x[i] > x[j]) - (x[i] < x[j])
            t = (y[i] > y[j]) - (y[i] < y[j])
            concordant += s * t > 0
            discordant += s * t < 0
            tied_x += s == 0 and t != 0
            tied_y += t == 0 and s != 0
    denominator = math.sqrt((concordant + discordant + tied_x) * (concordant + discordant + tied_y))
    return (concordant - discordant) / denominator if denominator else math.nan


@given(
    st.lists(
        st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=2, max_size=60
    )  # small integers: many ties on either side and on both
)
def test_kendall_equals_the_pairwise_definition(pairs: list[tuple[int, int]]) -> None:
    x, y = [float(a) for a, _ in pairs], [float(b) for _, b in pairs]
    expected = _kendall_by_pairs(x, y)
    if math.isnan(expected):
        assert math.isnan(kendall(x, y))
    else:
        assert kendall(x, y) == pytest.approx(expected)


def test_kendall_counts_pairs_across_blocks() -> None:
    """More items than one comparison block (1,024): pairs between blocks count too."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 400, size=2500).astype(float)  # ties in x, in y and in both
    y = np.round(x / 50 + rng.normal(size=2500))
    s = np.sign(x[:, None] - x[None, :])
    t = np.sign(y[:, None] - y[None, :])
    upper = np.triu(np.ones_like(s, dtype=bool), 1)
    concordant, discordant = np.sum((s * t > 0) & upper), np.sum((s * t < 0) & upper)
    tied_x, tied_y = np.sum((s == 0) & (t != 0) & upper), np.sum((t == 0) & (s != 0) & upper)
    expected = (concordant - discordant) / math.sqrt(
        (concordant + discordant + tied_x) * (concordant + discordant + tied_y)
    )
    assert kendall(x.tolist(), y.tolist()) == pytest.approx(expected, abs=1e-12)
