"""The runner interface, and the base of every runner whose runs the agent times itself.

A ``Runner`` is what the agent loop calls: ``info()`` for the descriptor and ``time()`` for a
job. Runners of the agent's host extend ``ProtocolRunner``: they only load a model
(``load``, returning a ``LoadedModel`` with one run and the inputs it was given) and may add a
profiled pass; the base pins the timing thread (``latlab.agent.isolation.timing_core``), runs the
measurement protocol (``latlab.agent.protocol``), records what else ran on the timing CPU and builds
the ``Timing``, the same way for every runtime. Under the adaptive protocol, a timed phase whose
verdict (``latlab.quality``) is noisy, drifting or interfered is timed again, up to the config's
``retimes``; the last attempt is the measurement and the earlier ones' verdicts are in its
provenance (``retimed``). A runtime that times itself (benchmark_model on a phone) implements
``Runner`` directly.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar, cast

from latlab.agent.errors import RunnerError
from latlab.agent.isolation import timing_core
from latlab.agent.protocol import phases, run_protocol
from latlab.quality import RETIMABLE, Quality, assess
from latlab.runtimes import Protocol as TimingProtocol
from latlab.runtimes import ProtocolConfig, RuntimeConfig
from latlab.schemas import OpTiming, RuntimeInfo, Timing

__all__ = ["LoadedModel", "Profile", "ProtocolRunner", "Runner", "Timing", "own_config"]


class Runner(Protocol):
    name: str

    def info(self) -> RuntimeInfo:
        """Runtime name, version and the providers/delegates available on this device."""
        ...

    def time(
        self, model_path: Path, config: RuntimeConfig, should_stop: Callable[[], bool]
    ) -> Timing:
        """Time the model with the measurement protocol; ``RunnerError`` if it cannot run,
        ``Interrupted`` if ``should_stop`` turns true."""
        ...


@dataclass(frozen=True)
class Profile:
    """A profiled pass's per-op rows and how they were taken (``op_profile``)."""

    ops: tuple[OpTiming, ...]
    about: dict[str, Any]


@dataclass(kw_only=True)
class LoadedModel:
    """A model loaded by a runtime, ready for the protocol."""

    #: One inference; returns only when its work is done (a GPU run synchronises inside).
    run_once: Callable[[], object]
    input_shapes: dict[str, list[int]]
    #: The provider or delegate that runs it.
    provider: str
    #: How the runs were timed, where that is more than the plain host call.
    provenance: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        """Release what the timed runs needed before the profiled pass (which loads its
        own); a runtime whose loaded model holds more extends it."""
        self.run_once = _released


def _released() -> object:
    raise RunnerError("the model was released after its timed runs")


C = TypeVar("C", bound=ProtocolConfig)
M = TypeVar("M", bound=LoadedModel)


class ProtocolRunner(ABC, Generic[C, M]):
    """A runner on the agent's host: the protocol, the pinning and the ``Timing`` are the
    base's; a runtime adds ``load`` (and ``profile`` if it has a profiler)."""

    #: The runtime's name (its ``RuntimeSpec.name``).
    name: ClassVar[str]
    #: The config model of the runtime (a job for another runtime is refused).
    config_type: ClassVar[type[ProtocolConfig]]
    #: The protocol's clock, in nanoseconds.
    clock = staticmethod(time.perf_counter_ns)

    @abstractmethod
    def info(self) -> RuntimeInfo: ...

    @abstractmethod
    def version(self) -> str:
        """The runtime's version, as measurements record it."""

    @abstractmethod
    def load(self, model_path: Path, config: C) -> M:
        """Load the model with the config's settings and generate its inputs (seeded by
        ``config.seed``); ``RunnerError`` if the runtime cannot."""

    def profile(self, loaded: M, config: C, should_stop: Callable[[], bool]) -> Profile | None:
        """Per-op rows from a separate profiled pass of the loaded model; None where the
        runtime has no profiler."""
        return None

    def time(
        self, model_path: Path, config: RuntimeConfig, should_stop: Callable[[], bool]
    ) -> Timing:
        started = time.perf_counter()
        own = self._own(config)
        warmup, timed = phases(own)
        retimes = own.retimes if own.protocol == TimingProtocol.adaptive else 0
        earlier: list[dict[str, Any]] = []
        with timing_core(own.cpu_affinity) as host:
            loaded = self.load(model_path, own)
            try:
                while True:
                    result = run_protocol(
                        loaded.run_once, warmup, timed, should_stop=should_stop, clock=self.clock
                    )
                    host_during_timing = host.lap()
                    quality = assess(result.samples_ms, host_during_timing)
                    if quality.verdict not in RETIMABLE or len(earlier) >= retimes:
                        break
                    earlier.append(_attempt(result.samples_ms, quality))
            finally:
                loaded.close()
            profile = self.profile(loaded, own, should_stop) if own.profile_ops else None
        retimed = {"retimed": earlier} if earlier else {}
        return Timing(
            runtime=self.name,
            runtime_version=self.version(),
            provider=loaded.provider,
            threads=own.threads,
            input_shapes=loaded.input_shapes,
            warmup=result.warmup,
            samples_ms=list(result.samples_ms),
            timing_wall_s=time.perf_counter() - started,
            op_profile=None if profile is None else profile.about,
            ops=[] if profile is None else list(profile.ops),
            provenance={**loaded.provenance, "host": host_during_timing, **retimed},
        )

    def _own(self, config: RuntimeConfig) -> C:
        return cast(C, own_config(self.name, config, self.config_type))


def _attempt(samples_ms: tuple[float, ...], quality: Quality) -> dict[str, Any]:
    """What the provenance keeps of an attempt that was timed again."""
    ordered = sorted(samples_ms)
    return {
        "verdict": quality.verdict.value,
        "rule": quality.rule,
        "n": len(ordered),
        "median_ms": ordered[len(ordered) // 2],
    }


K = TypeVar("K", bound=ProtocolConfig)


def own_config(runner: str, config: RuntimeConfig, config_type: type[K]) -> K:
    """``config`` as the runner's own config model; ``RunnerError`` if it is another
    runtime's."""
    if not isinstance(config, config_type):
        raise RunnerError(
            f"the {runner} runner got a {config.runtime} config ({type(config).__name__}, "
            f"not {config_type.__name__})"
        )
    return config
