"""The measurement protocol, runtime-agnostic: warm-up, then timed runs, every sample kept.

Warm-up runs until at least ``warmup_runs`` runs AND ``warmup_s`` seconds have passed; timed
runs likewise with ``timed_runs`` and ``timed_s``. Only the call itself sits between the two
clock reads of a sample; the stop check happens between samples.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.errors import Interrupted
from latlab.schemas import WarmupInfo

__all__ = ["ProtocolResult", "run_protocol"]

NS_PER_MS = 1e6


@dataclass(frozen=True)
class ProtocolResult:
    warmup: WarmupInfo
    samples_ms: tuple[float, ...]


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
    warmup_ns = _loop(run_once, warmup_runs, warmup_s, should_stop, clock)
    samples_ns = _loop(run_once, timed_runs, timed_s, should_stop, clock)
    return ProtocolResult(
        warmup=WarmupInfo(n=len(warmup_ns), total_ms=sum(warmup_ns) / NS_PER_MS),
        samples_ms=tuple(ns / NS_PER_MS for ns in samples_ns),
    )


def _loop(
    run_once: Callable[[], object],
    min_runs: int,
    min_s: float,
    should_stop: Callable[[], bool],
    clock: Callable[[], int],
) -> list[int]:
    samples: list[int] = []
    append = samples.append
    min_ns = int(min_s * 1e9)
    start = clock()
    while len(samples) < min_runs or clock() - start < min_ns:
        if should_stop():
            raise Interrupted("stop requested during the measurement")
        t0 = clock()
        run_once()
        append(clock() - t0)
    return samples
