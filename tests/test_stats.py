"""Latency statistics: the one definition the server stores."""

from __future__ import annotations

import math

import pytest
from hypothesis import given

from latlab.stats import latency_stats
from tests.strategies import latency_samples_ms


def test_a_known_sample_gives_the_written_out_statistics() -> None:
    s = latency_stats([1.0, 2.0, 3.0, 4.0, 10.0])
    assert s.n == 5
    assert s.median_ms == 3.0 and s.mean_ms == 4.0
    assert s.min_ms == 1.0 and s.max_ms == 10.0
    assert s.std_ms == pytest.approx(math.sqrt((9 + 4 + 1 + 0 + 36) / 4))
    assert s.p10_ms == pytest.approx(1.4) and s.p90_ms == pytest.approx(7.6)
    assert s.iqr_ms == pytest.approx(2.0)  # p75 4.0 - p25 2.0


@given(latency_samples_ms)
def test_statistics_are_ordered_and_count_every_sample(samples: list[float]) -> None:
    s = latency_stats(samples)
    eps = 1e-9 * max(1.0, s.max_ms)
    assert s.n == len(samples)
    assert s.min_ms - eps <= s.p10_ms <= s.median_ms + eps
    assert s.median_ms - eps <= s.p90_ms <= s.p99_ms + eps <= s.max_ms + 2 * eps
    assert s.min_ms - eps <= s.mean_ms <= s.max_ms + eps
    assert s.iqr_ms >= 0 and s.std_ms >= 0


@given(latency_samples_ms)
def test_constant_samples_have_no_spread(samples: list[float]) -> None:
    s = latency_stats([samples[0]] * len(samples))
    assert s.std_ms == pytest.approx(0.0, abs=1e-9) and s.iqr_ms == 0.0


@pytest.mark.parametrize("bad", [[], [1.0, float("nan")], [float("inf")]])
def test_empty_or_non_finite_samples_are_an_error(bad: list[float]) -> None:
    with pytest.raises(ValueError):
        latency_stats(bad)
