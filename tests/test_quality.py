"""How far to trust a measurement (latlab.quality): the median's interval, drift, the host's
report, and the verdict with its rule; a real run on a timing CPU another process competes for
is re-timed and stored with its verdict; the verdict and interval reach the API."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from latlab.agent.runners.ort import OrtRunner
from latlab.quality import (
    MIN_SAMPLES,
    QualityRules,
    Verdict,
    assess,
    ci_halfwidth_pct,
    drift_pct,
    median_ci,
)
from latlab.runtimes.onnxruntime import OnnxRuntimeConfig
from tests.factories import cnn_bytes

samples = st.lists(
    st.floats(min_value=0.001, max_value=1e4, allow_nan=False), min_size=1, max_size=400
)


@given(samples)
def test_the_interval_holds_the_median_within_the_samples(values: list[float]) -> None:
    low, high = median_ci(values)
    assert min(values) <= low <= statistics.median(values) <= high <= max(values)


@given(samples)
def test_fewer_samples_than_the_minimum_are_unknown(values: list[float]) -> None:
    quality = assess(values[: MIN_SAMPLES - 1])
    assert quality.verdict == Verdict.unknown and quality.drift_pct is None


def test_a_hot_host_is_throttled_even_without_samples() -> None:
    # a phone that reports only statistics: its thermal status still judges the run
    hot = assess([], {"thermal": 2, "thermal_limit": 0})
    assert hot.verdict == Verdict.throttled and "thermal reading 2" in hot.rule
    assert assess([], {"thermal": 0, "thermal_limit": 0}).verdict == Verdict.unknown


def test_the_interval_narrows_as_runs_add_up() -> None:
    base = [1.0, 1.1, 0.9, 1.05, 0.95, 1.2, 0.8, 1.0]
    widths = [ci_halfwidth_pct(base * k) for k in (2, 8, 32)]
    assert widths[0] > widths[1] > widths[2]


def test_drift_compares_the_last_third_with_the_first() -> None:
    # the thirds' medians 1.0 and 1.2, relative to the median of all (1.1)
    assert drift_pct([1.0] * 30 + [1.1] * 30 + [1.2] * 30) == pytest.approx(100 * 0.2 / 1.1)
    assert drift_pct([1.0] * 90) == 0


STEADY = [1.0 + 0.001 * (i % 7) for i in range(200)]


@pytest.mark.parametrize(
    ("host", "verdict", "words"),
    [
        ({}, Verdict.ok, "host quiet"),
        ({"other_busy_pct": 35.0, "steal_pct": 0.0}, Verdict.interfered, "other work"),
        ({"other_busy_pct": 1.0, "steal_pct": 9.0}, Verdict.interfered, "steal"),
        ({"load_1m": 5.5, "host_cpus": 2}, Verdict.interfered, "load 5.50"),
        ({"load_1m": 1.5, "host_cpus": 2}, Verdict.ok, "host quiet"),
        ({"freq_mhz": 1200, "max_freq_mhz": 3000}, Verdict.throttled, "1200 MHz"),
        ({"thermal": 4, "thermal_limit": 2}, Verdict.throttled, "thermal"),
    ],
)
def test_the_host_report_gives_its_verdict_before_the_samples_do(
    host: dict[str, float], verdict: Verdict, words: str
) -> None:
    quality = assess(STEADY, host)
    assert quality.verdict == verdict and words in quality.rule


def test_drift_comes_before_noise_and_each_names_its_limit() -> None:
    drifting = assess([1.0 + i / 1000 for i in range(300)])
    assert drifting.verdict == Verdict.drifting and "limit 3 %" in drifting.rule
    noisy = assess([1.0, 2.0] * 40)
    assert noisy.verdict == Verdict.noisy and "limit ±2 %" in noisy.rule
    lenient = assess([1.0, 2.0] * 40, rules=QualityRules(noisy_ci_pct=60))
    assert lenient.verdict == Verdict.ok


# --------------------------------------------------------------------------- real runs

linux_only = pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or not Path("/proc/stat").exists(),
    reason="CPU affinity and /proc/stat are Linux's",
)


@pytest.fixture
def spinner_on_last_cpu() -> Iterator[int]:
    """A busy process pinned to the host's last CPU: the CPU a run is timed on."""
    cpu = max(os.sched_getaffinity(0))
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        os.sched_setaffinity(spinner.pid, [cpu])
        time.sleep(0.3)
        yield cpu
    finally:
        spinner.kill()
        spinner.wait()


@linux_only
def test_a_run_sharing_its_cpu_is_retimed_and_keeps_its_verdict(
    tmp_path: Path, spinner_on_last_cpu: int
) -> None:
    path = tmp_path / "cnn.onnx"
    path.write_bytes(cnn_bytes())
    config = OnnxRuntimeConfig(
        cpu_affinity=[spinner_on_last_cpu], timed_max_s=0.5, retimes=2, profile_ops=False
    )
    timing = OrtRunner().time(path, config, lambda: False)
    host = timing.provenance["host"]
    quality = assess(timing.samples_ms, host)
    assert quality.verdict == Verdict.interfered, (host, quality)
    retimed = timing.provenance["retimed"]
    assert [a["verdict"] for a in retimed] == ["interfered", "interfered"]
    assert all(a["n"] >= config.timed_runs for a in retimed)
