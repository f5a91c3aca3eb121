"""The measurement protocol, on a fake clock: warm-up and timed runs stop only when both the
run count and the duration are reached; every sample is kept."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from latlab.agent.errors import Interrupted
from latlab.agent.protocol import run_protocol


class FakeClock:
    """Run ``i`` takes ``durations_ns[i]`` (the last one repeats); reading the clock is free."""

    def __init__(self, *durations_ns: int) -> None:
        self.now = 0
        self.durations_ns: Sequence[int] = durations_ns
        self.runs = 0

    def __call__(self) -> int:
        return self.now

    def run(self) -> None:
        self.now += self.durations_ns[min(self.runs, len(self.durations_ns) - 1)]
        self.runs += 1


MS = 1_000_000


def test_warmup_runs_until_both_count_and_time_are_reached() -> None:
    clock = FakeClock(1 * MS)
    result = run_protocol(
        clock.run, warmup_runs=3, warmup_s=0.010, timed_runs=1, timed_s=0, clock=clock
    )
    assert result.warmup.n == 10  # the count (3) came first; the 10 ms decided
    assert result.warmup.total_ms == pytest.approx(10.0)


def test_timed_runs_continue_past_the_count_until_the_minimum_time() -> None:
    clock = FakeClock(1 * MS)
    result = run_protocol(
        clock.run, warmup_runs=1, warmup_s=0.01, timed_runs=2, timed_s=0.05, clock=clock
    )
    assert result.warmup.n == 10
    assert len(result.samples_ms) == 50
    assert clock.runs == 60


def test_runs_stop_at_the_count_when_the_time_is_already_reached() -> None:
    clock = FakeClock(100 * MS)
    result = run_protocol(
        clock.run, warmup_runs=3, warmup_s=0.1, timed_runs=5, timed_s=0.2, clock=clock
    )
    assert result.warmup.n == 3 and result.warmup.total_ms == pytest.approx(300.0)
    assert result.samples_ms == (100.0,) * 5


def test_every_timed_sample_is_kept_in_order_and_the_warmup_is_reported_apart() -> None:
    clock = FakeClock(50 * MS, 40 * MS, 1 * MS, 3 * MS, 2 * MS, 7 * MS, 5 * MS)
    result = run_protocol(
        clock.run, warmup_runs=2, warmup_s=0, timed_runs=5, timed_s=0, clock=clock
    )
    assert result.warmup.n == 2 and result.warmup.total_ms == pytest.approx(90.0)
    assert result.samples_ms == (1.0, 3.0, 2.0, 7.0, 5.0)
    assert result.timed_total_ms == pytest.approx(18.0)


def test_zero_warmup_runs_none() -> None:
    clock = FakeClock(1_000)
    result = run_protocol(
        clock.run, warmup_runs=0, warmup_s=0, timed_runs=1, timed_s=0, clock=clock
    )
    assert result.warmup.n == 0 and result.warmup.total_ms == 0
    assert result.samples_ms == (0.001,)


@pytest.mark.parametrize("stop_after_runs", [0, 1, 5])
def test_a_stop_request_interrupts_between_runs(stop_after_runs: int) -> None:
    clock = FakeClock(1_000)
    with pytest.raises(Interrupted):
        run_protocol(
            clock.run,
            warmup_runs=1,
            warmup_s=0,
            timed_runs=100,
            timed_s=0,
            should_stop=lambda: clock.runs >= stop_after_runs,
            clock=clock,
        )
    assert clock.runs == stop_after_runs


def test_the_default_clock_measures_real_calls() -> None:
    result = run_protocol(
        lambda: sum(range(100)), warmup_runs=1, warmup_s=0, timed_runs=3, timed_s=0
    )
    assert result.warmup.n == 1 and len(result.samples_ms) == 3
    assert all(s >= 0 for s in result.samples_ms)
