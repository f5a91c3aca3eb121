"""The measurement protocol, on a fake clock: warm-up and timed runs stop only when both the
run count and the duration are reached; every sample is kept."""

from __future__ import annotations

import pytest

from agent.errors import Interrupted
from agent.protocol import run_protocol


class FakeClock:
    """Each run takes ``run_ns``; reading the clock costs nothing."""

    def __init__(self, run_ns: int) -> None:
        self.now = 0
        self.run_ns = run_ns
        self.runs = 0

    def __call__(self) -> int:
        return self.now

    def run(self) -> None:
        self.runs += 1
        self.now += self.run_ns


def test_runs_stop_at_the_count_when_the_time_is_already_reached() -> None:
    clock = FakeClock(run_ns=100_000_000)  # 100 ms a run
    result = run_protocol(
        clock.run, warmup_runs=3, warmup_s=0.1, timed_runs=5, timed_s=0.2, clock=clock
    )
    assert result.warmup.n == 3 and result.warmup.total_ms == pytest.approx(300.0)
    assert result.samples_ms == (100.0,) * 5


def test_runs_continue_until_the_minimum_time_is_reached() -> None:
    clock = FakeClock(run_ns=1_000_000)  # 1 ms a run
    result = run_protocol(
        clock.run, warmup_runs=1, warmup_s=0.01, timed_runs=2, timed_s=0.05, clock=clock
    )
    assert result.warmup.n == 10
    assert len(result.samples_ms) == 50
    assert clock.runs == 60


def test_zero_warmup_runs_none() -> None:
    clock = FakeClock(run_ns=1_000)
    result = run_protocol(
        clock.run, warmup_runs=0, warmup_s=0, timed_runs=1, timed_s=0, clock=clock
    )
    assert result.warmup.n == 0 and len(result.samples_ms) == 1


def test_a_stop_request_interrupts_between_runs() -> None:
    clock = FakeClock(run_ns=1_000)
    with pytest.raises(Interrupted):
        run_protocol(
            clock.run,
            warmup_runs=1,
            warmup_s=0,
            timed_runs=100,
            timed_s=0,
            should_stop=lambda: clock.runs >= 5,
            clock=clock,
        )
    assert clock.runs == 5
