"""The runner interface: one per runtime, chosen by the job's ``config.runtime``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from latlab.schemas import OpTiming, ReportedStats, RuntimeConfig, RuntimeInfo, WarmupInfo

__all__ = ["Runner", "Timing"]


@dataclass(frozen=True)
class Timing:
    """What a runner measured, with the provenance that changes the number."""

    runtime: str
    runtime_version: str
    #: The execution provider / delegate that actually ran the model.
    provider: str
    threads: int
    input_shapes: dict[str, list[int]]
    warmup: WarmupInfo
    #: Every timed run; empty where the runtime reports only statistics (``reported``).
    samples_ms: tuple[float, ...]
    #: Wall time of the whole ``time()`` call: sessions, warm-up, timed runs, profiled pass.
    timing_wall_s: float
    op_profile: dict[str, Any] | None
    ops: tuple[OpTiming, ...]
    #: The runtime's own statistics where it gives no per-run samples (benchmark_model).
    reported: ReportedStats | None = None
    #: Device facts at measuring time that change the number (a phone's thermal status).
    provenance: dict[str, Any] | None = None


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
