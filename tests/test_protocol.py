"""The measurement protocol, on a fake clock. Fixed: warm-up and timed runs stop only when both
the run count and the duration are reached; every sample is kept. Adaptive: the stopping rule
on synthetic sample streams (stable, noisy, drifting, bimodal), its floors and caps."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import pytest

from latlab.agent.errors import Interrupted
from latlab.agent.protocol import Phase, ProtocolResult, phases, run_protocol
from latlab.quality import Verdict, assess, ci_halfwidth_pct
from latlab.runtimes.onnxruntime import OnnxRuntimeConfig


class FakeClock:
    """Run ``i`` takes ``durations_ns[i]`` (the last one repeats), or ``stream(i)`` ns;
    reading the clock is free."""

    def __init__(self, *durations_ns: int, stream: Callable[[int], int] | None = None) -> None:
        self.now = 0
        self.durations_ns: Sequence[int] = durations_ns
        self.stream = stream
        self.runs = 0

    def __call__(self) -> int:
        return self.now

    def run(self) -> None:
        if self.stream is not None:
            self.now += self.stream(self.runs)
        else:
            self.now += self.durations_ns[min(self.runs, len(self.durations_ns) - 1)]
        self.runs += 1


def fixed(
    clock: FakeClock,
    *,
    warmup_runs: int,
    warmup_s: float,
    timed_runs: int,
    timed_s: float,
    should_stop: Callable[[], bool] | None = None,
) -> ProtocolResult:
    """The fixed protocol with these floors, on ``clock``."""
    return run_protocol(
        clock.run,
        Phase(warmup_runs, warmup_s),
        Phase(timed_runs, timed_s),
        should_stop=should_stop or (lambda: False),
        clock=clock,
    )


MS = 1_000_000


def test_warmup_runs_until_both_count_and_time_are_reached() -> None:
    clock = FakeClock(1 * MS)
    result = fixed(clock, warmup_runs=3, warmup_s=0.010, timed_runs=1, timed_s=0)
    assert result.warmup.n == 10  # the count (3) came first; the 10 ms decided
    assert result.warmup.total_ms == pytest.approx(10.0)


def test_timed_runs_continue_past_the_count_until_the_minimum_time() -> None:
    clock = FakeClock(1 * MS)
    result = fixed(clock, warmup_runs=1, warmup_s=0.01, timed_runs=2, timed_s=0.05)
    assert result.warmup.n == 10
    assert len(result.samples_ms) == 50
    assert clock.runs == 60


def test_runs_stop_at_the_count_when_the_time_is_already_reached() -> None:
    clock = FakeClock(100 * MS)
    result = fixed(clock, warmup_runs=3, warmup_s=0.1, timed_runs=5, timed_s=0.2)
    assert result.warmup.n == 3 and result.warmup.total_ms == pytest.approx(300.0)
    assert result.samples_ms == (100.0,) * 5


def test_every_timed_sample_is_kept_in_order_and_the_warmup_is_reported_apart() -> None:
    clock = FakeClock(50 * MS, 40 * MS, 1 * MS, 3 * MS, 2 * MS, 7 * MS, 5 * MS)
    result = fixed(clock, warmup_runs=2, warmup_s=0, timed_runs=5, timed_s=0)
    assert result.warmup.n == 2 and result.warmup.total_ms == pytest.approx(90.0)
    assert result.samples_ms == (1.0, 3.0, 2.0, 7.0, 5.0)
    assert result.timed_total_ms == pytest.approx(18.0)


def test_zero_warmup_runs_none() -> None:
    clock = FakeClock(1_000)
    result = fixed(clock, warmup_runs=0, warmup_s=0, timed_runs=1, timed_s=0)
    assert result.warmup.n == 0 and result.warmup.total_ms == 0
    assert result.samples_ms == (0.001,)


@pytest.mark.parametrize("stop_after_runs", [0, 1, 5])
def test_a_stop_request_interrupts_between_runs(stop_after_runs: int) -> None:
    clock = FakeClock(1_000)
    with pytest.raises(Interrupted):
        fixed(
            clock,
            warmup_runs=1,
            warmup_s=0,
            timed_runs=100,
            timed_s=0,
            should_stop=lambda: clock.runs >= stop_after_runs,
        )
    assert clock.runs == stop_after_runs


def test_the_default_clock_measures_real_calls() -> None:
    result = run_protocol(lambda: sum(range(100)), Phase(1, 0), Phase(3, 0))
    assert result.warmup.n == 1 and len(result.samples_ms) == 3
    assert all(s >= 0 for s in result.samples_ms)


# --------------------------------------------------------------------------- adaptive

ADAPTIVE = OnnxRuntimeConfig()  # the default: adaptive, 1 % target


def adaptive(clock: FakeClock, config: OnnxRuntimeConfig = ADAPTIVE) -> ProtocolResult:
    warmup, timed = phases(config)
    return run_protocol(clock.run, warmup, timed, clock=clock)


def jitter(base_ns: int, rel: float, seed: int = 0) -> Callable[[int], int]:
    rng = random.Random(seed)
    return lambda i: int(base_ns * (1 + rng.uniform(-rel, rel)))


def test_the_default_protocol_is_adaptive_and_the_fixed_one_keeps_its_floors() -> None:
    assert ADAPTIVE.protocol == "adaptive" and ADAPTIVE.protocol_version == "2"
    old = OnnxRuntimeConfig(protocol="fixed")
    assert (old.warmup_runs, old.warmup_s, old.timed_runs, old.timed_s) == (10, 1.0, 50, 2.0)
    assert old.protocol_version == "1"
    warmup, timed = phases(old)
    assert warmup.done is None and timed.done is None


def test_a_stable_stream_stops_at_the_floors() -> None:
    clock = FakeClock(stream=jitter(1 * MS, 0.002))
    result = adaptive(clock)
    # the floor of 0.5 s decides: 500 runs of 1 ms; the interval was tight long before
    assert 500 <= len(result.samples_ms) <= 502  # (the jitter's rounding)
    assert ci_halfwidth_pct(result.samples_ms) <= ADAPTIVE.target_ci_pct
    assert assess(result.samples_ms).verdict == Verdict.ok


def test_a_noisy_stream_runs_until_the_interval_is_within_the_target() -> None:
    quiet = adaptive(FakeClock(stream=jitter(10 * MS, 0.002)))
    clock = FakeClock(stream=jitter(10 * MS, 0.1))  # needs ~400 runs: under the 5 s cap
    noisy = adaptive(clock)
    assert 50 <= len(quiet.samples_ms) <= 51  # 0.5 s of 10 ms runs
    assert len(noisy.samples_ms) > len(quiet.samples_ms)
    assert ci_halfwidth_pct(noisy.samples_ms) <= ADAPTIVE.target_ci_pct
    # it stopped within ~10 % of the first run count that met the target
    first = next(
        n
        for n in range(50, len(noisy.samples_ms) + 1)
        if ci_halfwidth_pct(noisy.samples_ms[:n]) <= ADAPTIVE.target_ci_pct
    )
    assert len(noisy.samples_ms) <= first * 1.1 + 1


def test_a_bimodal_stream_runs_to_the_cap_and_is_judged_noisy() -> None:
    rng = random.Random(1)
    clock = FakeClock(stream=lambda i: (1 if rng.random() < 0.5 else 2) * MS)
    result = adaptive(clock)
    timed_s = result.timed_total_ms / 1e3
    assert ADAPTIVE.timed_max_s <= timed_s <= ADAPTIVE.timed_max_s + 0.002  # the cap
    quality = assess(result.samples_ms)
    assert quality.verdict == Verdict.noisy and "interval" in quality.rule


def test_a_drifting_stream_is_judged_drifting() -> None:
    clock = FakeClock(stream=lambda i: int(MS * (1 + i / 2000)))  # slower by 5 % every 100 runs
    result = adaptive(clock)
    quality = assess(result.samples_ms)
    assert quality.verdict == Verdict.drifting
    assert quality.drift_pct is not None and quality.drift_pct > 3


def test_the_warmup_ends_when_the_running_median_settles() -> None:
    cold = [30 * MS] * 5  # a cold start: 5 slow runs, then 1 ms
    clock = FakeClock(stream=lambda i: cold[i] if i < len(cold) else MS)
    result = adaptive(clock)
    # 0.1 s floor reached during the cold runs (150 ms), settled once the last two windows
    # of the steady runs agree: far short of the 1 s cap
    assert result.warmup.n < 40 and result.warmup.total_ms < 250


def test_a_warmup_that_never_settles_stops_at_its_cap() -> None:
    clock = FakeClock(stream=lambda i: (1 + i) * MS // 10 + MS)  # slower and slower
    result = adaptive(clock)
    assert ADAPTIVE.warmup_max_s * 1e3 <= result.warmup.total_ms < ADAPTIVE.warmup_max_s * 1e3 + 150


def test_the_run_cap_bounds_a_fast_noisy_model() -> None:
    config = OnnxRuntimeConfig(timed_max_runs=300, timed_runs=10, timed_s=0)
    rng = random.Random(2)
    clock = FakeClock(stream=lambda i: (1 if rng.random() < 0.5 else 3) * 1000)
    assert len(adaptive(clock, config).samples_ms) == 300


def test_the_rule_is_checked_on_a_geometric_schedule() -> None:
    checks: list[int] = []

    def never(samples: list[int]) -> bool:
        checks.append(len(samples))
        return False

    clock = FakeClock(1000)
    run_protocol(clock.run, Phase(0, 0), Phase(10, 0, never, 100_000, None), clock=clock)
    assert clock.runs == 100_000
    assert len(checks) < 120  # 10 checks to 20 runs, then one per 10 % more: not one per run
