"""The measurement protocol, runtime-agnostic: warm-up, then timed runs, every sample kept.

Warm-up runs until at least ``warmup_runs`` runs AND ``warmup_s`` seconds have passed; timed
runs likewise with ``timed_runs`` and ``timed_s``. Only the call itself sits between the two
clock reads of a sample; the stop check happens between samples, and the duration check reuses
the clock read that ended the previous sample, so the loop adds no clock read of its own.
Python's cyclic garbage collector is off during the runs (as ``timeit`` does): a collection
of the agent's other objects would land inside a sample.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass

from latlab.agent.errors import Interrupted
from latlab.schemas import WarmupInfo

__all__ = ["ProtocolResult", "run_protocol"]

NS_PER_MS = 1e6
NS_PER_S = 1e9


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
    *,
    warmup_runs: int,
    warmup_s: float,
    timed_runs: int,
    timed_s: float,
    should_stop: Callable[[], bool] = _never,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> ProtocolResult:
    """Warm up, then time ``run_once`` until both the run count and the duration are reached.

    ``clock`` returns nanoseconds (``time.perf_counter_ns``); ``run_once`` must return only
    when its work is done (a GPU runner synchronises inside it). ``Interrupted`` is raised as
    soon as ``should_stop()`` is true between two runs.
    """
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        warmup_ns = _loop(run_once, warmup_runs, warmup_s, should_stop, clock)
        samples_ns = _loop(run_once, timed_runs, timed_s, should_stop, clock)
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
    min_runs: int,
    min_s: float,
    should_stop: Callable[[], bool],
    clock: Callable[[], int],
) -> list[int]:
    """Durations (ns) of runs until at least ``min_runs`` runs and ``min_s`` seconds."""
    samples: list[int] = []
    append = samples.append
    min_ns = int(min_s * NS_PER_S)
    start = end = clock()
    while len(samples) < min_runs or end - start < min_ns:
        if should_stop():
            raise Interrupted("stop requested during the measurement")
        t0 = clock()
        run_once()
        end = clock()
        append(end - t0)
    return samples
