"""The measurement protocol, runtime-agnostic: warm-up, then timed runs, every sample kept.

Both phases run until at least their floor of runs AND seconds (``warmup_runs``/``warmup_s``,
``timed_runs``/``timed_s``). The fixed protocol stops there. The adaptive one goes on until
its rule is met or a cap is reached: the warm-up until the running median settles (the median
of the last quarter of the runs within ``SETTLE_PCT`` of the quarter before, at most
``warmup_max_s``), the timed runs until the median's 95 % interval is within ``target_ci_pct``
of it (``latlab.quality``; at most ``timed_max_s`` and ``timed_max_runs``). The rule is
checked on a geometric schedule (every ~10 % more runs), so its cost stays out of the runs.

Only the call itself sits between the two clock reads of a sample; the stop check happens
between samples, and the duration check reuses the clock read that ended the previous sample,
so the loop adds no clock read of its own. Python's cyclic garbage collector is off during the
runs (as ``timeit`` does): a collection of the agent's other objects would land inside a sample.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass

from latlab.agent.errors import Interrupted
from latlab.quality import ci_halfwidth_pct
from latlab.runtimes import Protocol, ProtocolConfig
from latlab.schemas import WarmupInfo

__all__ = ["Phase", "ProtocolResult", "phases", "run_protocol"]

NS_PER_MS = 1e6
NS_PER_S = 1e9
#: The adaptive warm-up has settled when the median of its last quarter of runs is within this
#: many % of the quarter's before (at least ``SETTLE_WINDOW`` runs each).
SETTLE_PCT = 2.0
SETTLE_WINDOW = 3


@dataclass(frozen=True)
class Phase:
    """How long one phase runs: at least ``min_runs`` and ``min_s``; then, with a rule, until
    ``done(samples_ns)`` or a cap."""

    min_runs: int
    min_s: float
    done: Callable[[list[int]], bool] | None = None
    max_runs: int | None = None
    max_s: float | None = None


def settled(samples_ns: list[int]) -> bool:
    """The warm-up's rule: the last quarter's median within ``SETTLE_PCT`` of the quarter's
    before."""
    w = max(SETTLE_WINDOW, len(samples_ns) // 4)
    if len(samples_ns) < 2 * w:
        return False
    last = sorted(samples_ns[-w:])[w // 2]
    before = sorted(samples_ns[-2 * w : -w])[w // 2]
    return abs(last - before) <= SETTLE_PCT / 100 * before


def phases(config: ProtocolConfig) -> tuple[Phase, Phase]:
    """The warm-up and timed phases of ``config``'s protocol."""
    if config.protocol == Protocol.fixed:
        return (
            Phase(config.warmup_runs, config.warmup_s),
            Phase(config.timed_runs, config.timed_s),
        )
    target = config.target_ci_pct

    def tight(samples_ns: list[int]) -> bool:
        return ci_halfwidth_pct(samples_ns) <= target

    return (
        Phase(config.warmup_runs, config.warmup_s, settled, None, config.warmup_max_s),
        Phase(config.timed_runs, config.timed_s, tight, config.timed_max_runs, config.timed_max_s),
    )


@dataclass(frozen=True)
class ProtocolResult:
    #: Warm-up runs and their total time, reported apart from the samples.
    warmup: WarmupInfo
    #: Every timed run, in order.
    samples_ms: tuple[float, ...]
    #: Sum of the timed runs.
    timed_total_ms: float


def _never() -> bool:
    return False


def run_protocol(
    run_once: Callable[[], object],
    warmup: Phase,
    timed: Phase,
    *,
    should_stop: Callable[[], bool] = _never,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> ProtocolResult:
    """Warm up, then time ``run_once``, each phase as long as its ``Phase`` says.

    ``clock`` returns nanoseconds (``time.perf_counter_ns``); ``run_once`` must return only
    when its work is done (a GPU runner synchronises inside it). ``Interrupted`` is raised as
    soon as ``should_stop()`` is true between two runs.
    """
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        warmup_ns = _loop(run_once, warmup, should_stop, clock)
        samples_ns = _loop(run_once, timed, should_stop, clock)
    finally:
        if gc_was_enabled:
            gc.enable()
    return ProtocolResult(
        warmup=WarmupInfo(n=len(warmup_ns), total_ms=sum(warmup_ns) / NS_PER_MS),
        samples_ms=tuple(ns / NS_PER_MS for ns in samples_ns),
        timed_total_ms=sum(samples_ns) / NS_PER_MS,
    )


def _loop(
    run_once: Callable[[], object],
    phase: Phase,
    should_stop: Callable[[], bool],
    clock: Callable[[], int],
) -> list[int]:
    """Durations (ns) of runs until the phase's floors are met and then, with a rule, until it
    holds or a cap is reached."""
    samples: list[int] = []
    append = samples.append
    min_ns = int(phase.min_s * NS_PER_S)
    max_runs = phase.max_runs if phase.max_runs is not None else 1 << 62
    max_ns = int(phase.max_s * NS_PER_S) if phase.max_s is not None else 1 << 62
    check_at = 0
    start = end = clock()
    while True:
        if len(samples) >= phase.min_runs and end - start >= min_ns:  # the floors are met
            if phase.done is None or len(samples) >= max_runs or end - start >= max_ns:
                break
            if len(samples) >= check_at:
                if phase.done(samples):
                    break
                check_at = len(samples) + max(1, len(samples) // 10)
        if should_stop():
            raise Interrupted("stop requested during the measurement")
        t0 = clock()
        run_once()
        end = clock()
        append(end - t0)
    return samples
    max_runs = phase.max_runs if phase.max_runs is not None else 1 << 62
    max_ns = int(phase.max_s * NS_PER_S) if phase.max_s is not None else 1 << 62
    check_at = len(samples)
    while len(samples) < max_runs and end - start < max_ns:
        if len(samples) >= check_at:
            if phase.done(samples):
                break
            check_at = len(samples) + max(1, len(samples) // 10)
        if should_stop():
            raise Interrupted("stop requested during the measurement")
        t0 = clock()
        run_once()
        end = clock()
        append(end - t0)
    return samples
