"""What a runtime is to latlab: the model format it reads, its config model (runtime-specific
settings over the one shared protocol config), how a job's provider or delegate is matched to a
device, how it fuses ops into kernels, and the runner that times models with it.

A runtime is one module that defines a ``RuntimeSpec`` (see ``latlab.runtimes.onnxruntime``)
and one line in the registry (``latlab.runtimes.registry.BUILTIN``) or an entry point in the
``latlab.runtimes`` group of another package.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from latlab.wire import In

__all__ = [
    "DEADLINE_BASE_S",
    "DEADLINE_PROTOCOL_FACTOR",
    "MAX_DEADLINE_S",
    "PROTOCOL_VERSIONS",
    "FusionRules",
    "ModelFormat",
    "Protocol",
    "ProtocolConfig",
    "RuntimeSpec",
    "default_deadline_s",
]

#: A job's default deadline: this much for what the protocol counts in runs rather than seconds
#: (a slow model's 10 warm-up, 50 timed and 13 profiled runs), the download and the loads ...
DEADLINE_BASE_S = 600.0
#: ... plus this many times the protocol's own seconds (warm-up and timed).
DEADLINE_PROTOCOL_FACTOR = 10.0
#: The longest deadline a job may ask for (6 h): past it a device is out of the lab too long.
MAX_DEADLINE_S = 6 * 3600.0


class ModelFormat(StrEnum):
    onnx = "onnx"
    tflite = "tflite"


@dataclass(frozen=True)
class FusionRules:
    """How a runtime groups graph ops into the kernels it executes (``latlab.lut.fusion.fuse``).

    ``chains``: op-type sequences fused into one kernel when each op is the only consumer of
    the previous one's output (longest chain first); ``merge_duplicates``: an op computed once
    when another of the same type reads the same inputs (common-subexpression elimination);
    ``free``: ops the runtime removes or that only relabel memory.
    """

    name: str
    chains: tuple[tuple[str, ...], ...]
    merge_duplicates: bool = True
    free: frozenset[str] = frozenset({"Identity", "Dropout"})


def default_deadline_s(protocol: Mapping[str, Any]) -> float:
    """A job's deadline when its config names none, scaled from the protocol's seconds:
    ``DEADLINE_BASE_S + DEADLINE_PROTOCOL_FACTOR * seconds``, where seconds are the fixed
    protocol's ``warmup_s + timed_s`` (630 s by default) or the adaptive protocol's caps,
    ``warmup_max_s + timed_max_s`` for the run and each re-timing (760 s by default); never
    over ``MAX_DEADLINE_S``."""
    if protocol.get("protocol") == Protocol.fixed:
        seconds = float(protocol.get("warmup_s", 0.0)) + float(protocol.get("timed_s", 0.0))
    else:
        attempts = 1 + int(protocol.get("retimes", 0))
        seconds = float(protocol.get("warmup_max_s", 0.0)) + attempts * float(
            protocol.get("timed_max_s", 0.0)
        )
    return min(MAX_DEADLINE_S, DEADLINE_BASE_S + DEADLINE_PROTOCOL_FACTOR * seconds)


class Protocol(StrEnum):
    """How long a model is timed (``agent/protocol.py``)."""

    #: Warm-up until the running median settles, timed runs until the median's 95 % interval
    #: is within ``target_ci_pct``; floors and caps in runs and seconds; a run whose verdict is
    #: not ``ok`` re-timed up to ``retimes`` times.
    adaptive = "adaptive"
    #: At least ``warmup_runs`` and ``warmup_s``, then at least ``timed_runs`` and ``timed_s``.
    fixed = "fixed"


#: The version every measurement records for each protocol.
PROTOCOL_VERSIONS = {Protocol.fixed: "1", Protocol.adaptive: "2"}


def _by_protocol(fixed: Any, adaptive: Any) -> Any:
    """A default that depends on the config's ``protocol`` (declared before it)."""
    return lambda data: fixed if data.get("protocol") == Protocol.fixed else adaptive


class ProtocolConfig(In):
    """How to time a model: the settings every runtime shares (threads, the measurement
    protocol, pinning, inputs). Each runtime's config model extends it with its own settings
    and a ``runtime`` literal that names it."""

    runtime: str
    #: Intra-op threads. 1 is the stable default: 2+ threads jitter 2-5x on small hosts.
    threads: int = Field(default=1, ge=1, le=256)
    protocol: Protocol = Protocol.adaptive
    #: Warm-up: at least this many runs and seconds (the fixed protocol's whole warm-up; the
    #: adaptive one's floor). Defaults: fixed 10 runs and 1 s, adaptive 3 runs and 0.1 s.
    warmup_runs: int = Field(default_factory=_by_protocol(10, 3), ge=0, le=100_000)
    warmup_s: float = Field(default_factory=_by_protocol(1.0, 0.1), ge=0, le=600)
    #: Timed runs: at least this many runs and seconds. Defaults: fixed 50 runs and 2 s,
    #: adaptive 20 runs and 0.5 s.
    timed_runs: int = Field(default_factory=_by_protocol(50, 20), ge=1, le=100_000)
    timed_s: float = Field(default_factory=_by_protocol(2.0, 0.5), ge=0, le=600)
    #: Adaptive: the warm-up's cap in seconds, the timed runs' caps in seconds and runs, and
    #: the target half-width of the median's 95 % interval relative to the median (%).
    warmup_max_s: float = Field(default=1.0, ge=0, le=600)
    timed_max_s: float = Field(default=5.0, ge=0, le=600)
    timed_max_runs: int = Field(default=20_000, ge=1, le=1_000_000)
    target_ci_pct: float = Field(default=1.0, gt=0, le=100)
    #: Adaptive: times a run whose verdict is noisy, drifting or interfered is timed again.
    retimes: int = Field(default=2, ge=0, le=10)
    #: Per-op times from a separate profiled pass (never from the timed runs).
    profile_ops: bool = True
    profile_runs: int = Field(default_factory=_by_protocol(10, 5), ge=1, le=10_000)
    #: Pin the timing thread to these CPU ids (Linux), if given.
    cpu_affinity: list[Annotated[int, Field(ge=0, le=65_535)]] | None = Field(
        default=None, max_length=4096
    )
    #: Seed of the generated inputs.
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    #: The longest the job may take on a device, from its claim to its result (download, load,
    #: warm-up, timed and profiled runs): past it the agent stops the runtime and the job ends
    #: ``failed``, and the server refuses a late result. Default: ``default_deadline_s``.
    deadline_s: float = Field(default_factory=default_deadline_s, ge=1, le=MAX_DEADLINE_S)

    #: The fields of the shared protocol; the rest of a config's fields are the runtime's.
    SHARED: ClassVar[frozenset[str]] = frozenset(
        {
            "runtime",
            "threads",
            "protocol",
            "warmup_max_s",
            "timed_max_s",
            "timed_max_runs",
            "target_ci_pct",
            "retimes",
            "warmup_runs",
            "warmup_s",
            "timed_runs",
            "timed_s",
            "profile_ops",
            "profile_runs",
            "cpu_affinity",
            "seed",
            "deadline_s",
        }
    )

    @property
    def protocol_version(self) -> str:
        """What a measurement timed with this config records as its ``protocol_version``."""
        return PROTOCOL_VERSIONS[self.protocol]

    @property
    def provider(self) -> str:
        """The execution provider or delegate a device must advertise to run this config."""
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        """The runtime's own settings (those beyond the shared protocol), JSON-ready."""
        return self.model_dump(mode="json", exclude=set(self.SHARED))

    def identity(self) -> tuple[str, str, int, str]:
        """What changes a kernel's time: runtime, provider, threads and the runtime's own
        settings (as canonical JSON). Two configs that differ only in the protocol (run counts,
        seconds, seed, pinning) measure the same kernels."""
        return (
            self.runtime,
            self.provider,
            self.threads,
            json.dumps(self.settings(), sort_keys=True, separators=(",", ":")),
        )

    def identity_key(self) -> str:
        """The identity as one column value (sha256 hex of its canonical JSON): jobs and
        measurements store it, so "measured with the same runtime identity" is a SQL filter."""
        canonical = json.dumps(list(self.identity()), separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def describe(self) -> str:
        """The identity in words: ``onnxruntime (CPUExecutionProvider, 1 thread,
        graph_optimization=all)``."""
        own = [f"{k}={v}" for k, v in self.settings().items() if v != self.provider]
        threads = f"{self.threads} thread" + ("s" if self.threads > 1 else "")
        return f"{self.runtime} ({', '.join([self.provider, threads, *own])})"


@dataclass(frozen=True)
class RuntimeSpec:
    """One runtime, as the server, the agent, the LUT builder and the CLI see it."""

    #: The name jobs and measurements carry (``config.runtime``).
    name: str
    #: The model files it reads.
    model_format: ModelFormat
    #: Its config model: a ``ProtocolConfig`` subclass whose ``runtime`` is ``Literal[name]``.
    config: type[ProtocolConfig]
    #: ``"module:Class"`` of its runner, imported only by an agent that loads it (the runtime's
    #: package is needed there alone).
    runner: str
    #: Where the runner times models: on the agent's host, or on a phone driven over adb
    #: (constructed with the adb connection; see ``latlab.agent.runners.phone_runners``).
    target: Literal["host", "adb"] = "host"
    #: How it fuses ops into kernels; None where that is not known.
    fusion: FusionRules | None = None
    #: One line for ``latlab runtimes`` and the docs.
    summary: str = ""

    @property
    def builds_luts(self) -> bool:
        """Whether per-op LUTs can be built from its measurements: they map profiled kernels
        onto ONNX graphs through its fusion rules."""
        return self.fusion is not None and self.model_format is ModelFormat.onnx
