"""Accuracy metrics: written-out cases and properties."""

from __future__ import annotations

import math

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
