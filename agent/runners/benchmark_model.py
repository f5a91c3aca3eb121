"""The benchmark_model runner: TFLite models timed on an Android phone over adb by TFLite's own
``benchmark_model`` binary, the way phone latency is measured in the literature.

One job: push the model, one timed pass (the protocol's warm-up and timed runs as
benchmark_model's ``--warmup_runs/--warmup_min_secs/--num_runs/--min_secs``, no profiler),
then, if asked, a separate ``--enable_op_profiling`` pass for the per-op rows, and the model is
removed from the phone whatever happened. The phone's thermal status before and after, the
delegate, the threads and fixed-performance mode go into the measurement's provenance.

benchmark_model prints statistics (count, first, min, max, mean, std), never the runs
themselves: the result carries them as ``ReportedStats`` and the server stores the mean as the
headline, saying so in the provenance. Per-op times are its means too.
"""

from __future__ import annotations

import contextlib
import logging
import shlex
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from latlab.agent.adb import Adb
from latlab.agent.config import AgentSettings
from latlab.agent.errors import Interrupted, RunnerError, RunnerUnavailable
from latlab.agent.runners.base import Timing, own_config
from latlab.agent.runners.benchmark_output import (
    BenchmarkOutput,
    BenchmarkOutputError,
    OpRow,
    parse_benchmark_output,
)
from latlab.errors import ModelInvalid
from latlab.runtimes import RuntimeConfig
from latlab.runtimes.benchmark_model import BenchmarkModelConfig
from latlab.schemas import OpTiming, ReportedStats, RuntimeInfo, WarmupInfo
from latlab.tflite_summary import is_tflite, summarize_tflite

__all__ = ["DEFAULT_BINARY", "BenchmarkModelRunner"]

log = logging.getLogger(__name__)

DEFAULT_BINARY = "/data/local/tmp/benchmark_model"
#: Where models are pushed on the phone (one file per job, removed after it).
REMOTE_DIR = "/data/local/tmp/latlab"
#: Warm-up runs of the profiled pass (its rows cover the regular runs only).
PROFILE_WARMUP_RUNS = 3
#: benchmark_model stops at --max_secs even short of --num_runs; the protocol has no cap of
#: its own, so this is the adb call's limit.
MAX_SECS = 600
#: Profiler entries per run and node are kept in a buffer; 1024 (the default) overflows on a
#: few hundred nodes.
PROFILE_BUFFER_ENTRIES = 65536
US_PER_MS = 1000.0
TOOL = "benchmark_model"


class BenchmarkModelRunner:
    name = "benchmark_model"

    def __init__(
        self, adb: Adb, binary: str = DEFAULT_BINARY, *, fixed_performance: bool = False
    ) -> None:
        self.adb = adb
        self.binary = binary
        self.fixed_performance = fixed_performance
        self._version: str | None = None

    @classmethod
    def for_phone(cls, adb: Adb, settings: AgentSettings) -> BenchmarkModelRunner:
        return cls(adb, settings.benchmark_model_path, fixed_performance=settings.fixed_performance)

    def info(self) -> RuntimeInfo:
        return RuntimeInfo(
            name=self.name, version=self.version(), providers=["XNNPACK", "builtin", "GPU"]
        )

    def version(self) -> str:
        """benchmark_model prints no version: the binary's sha256 names the build."""
        if self._version is None:
            try:
                out = self.adb.shell(f"sha256sum {shlex.quote(self.binary)}")
            except RunnerUnavailable:
                raise
            except RunnerError as exc:
                raise RunnerUnavailable(
                    f"no benchmark_model at {self.binary} on phone {self.adb.serial}: push "
                    f"TFLite's android_aarch64_benchmark_model there and chmod +x it ({exc})"
                ) from exc
            digest = out.split()[0] if out.split() else ""
            self._version = f"sha256:{digest[:16]}" if digest else "unknown build"
        return self._version

    def time(
        self, model_path: Path, config: RuntimeConfig, should_stop: Callable[[], bool]
    ) -> Timing:
        started = time.perf_counter()
        own = own_config(self.name, config, BenchmarkModelConfig)
        input_shapes = _input_shapes(model_path.read_bytes())
        remote = f"{REMOTE_DIR}/{model_path.name}"
        thermal_before = self.adb.thermal_status()
        self.adb.shell(f"mkdir -p {REMOTE_DIR}")
        self.adb.push(model_path, remote)
        try:
            with self._performance_mode():
                timed = self._run(remote, own, profile=False)
                profiled = None
                if own.profile_ops:
                    if should_stop():
                        raise Interrupted("stop requested between the timed and profiled pass")
                    profiled = self._run(remote, own, profile=True)
        finally:
            self._cleanup(remote)
        thermal_after = self.adb.thermal_status()
        runs = timed.runs
        if runs is None or runs.avg_us is None:
            raise BenchmarkOutputError(
                "benchmark_model printed no statistics of its regular runs (a count=... avg= "
                "line): a TFLite 2.x build is needed"
            )
        provider = own.provider
        ops = _ops(profiled, provider) if profiled is not None else ()
        return Timing(
            runtime=self.name,
            runtime_version=self.version(),
            provider=provider,
            threads=own.threads,
            input_shapes=input_shapes,
            warmup=_warmup(timed),
            samples_ms=[],
            reported=ReportedStats(
                reported_by=TOOL,
                count=runs.count,
                mean_ms=runs.avg_us / US_PER_MS,
                std_ms=_ms(runs.std_us),
                min_ms=_ms(runs.min_us),
                max_ms=_ms(runs.max_us),
                first_ms=_ms(runs.first_us),
            ),
            timing_wall_s=time.perf_counter() - started,
            op_profile=None if profiled is None else _op_profile(profiled, ops),
            ops=list(ops),
            provenance={
                "phone": self.adb.serial,
                "delegate": provider,
                "threads": own.threads,
                "thermal_status_before": thermal_before,
                "thermal_status_after": thermal_after,
                "host": _thermal_host(thermal_before, thermal_after),
                "fixed_performance_mode": self.fixed_performance,
                "init_ms": _ms(timed.init_us),
                "binary": self.binary,
            },
        )

    def command(self, remote: str, config: BenchmarkModelConfig, *, profile: bool) -> str:
        """The shell command of one pass: the timed pass follows the protocol, the profiled
        pass runs ``profile_runs`` after a short warm-up."""
        flags: dict[str, object] = {
            "graph": remote,
            "num_threads": config.threads,
            "use_gpu": config.use_gpu,
            "use_xnnpack": config.xnnpack and not config.use_gpu,
            "warmup_runs": PROFILE_WARMUP_RUNS if profile else config.warmup_runs,
            "warmup_min_secs": 0 if profile else config.warmup_s,
            "num_runs": config.profile_runs if profile else config.timed_runs,
            "min_secs": 0 if profile else config.timed_s,
            "max_secs": MAX_SECS,
            "enable_op_profiling": profile,
        }
        if profile:
            flags["max_profiling_buffer_entries"] = PROFILE_BUFFER_ENTRIES
        words = [shlex.quote(self.binary)]
        words += [f"--{key}={shlex.quote(_flag(value))}" for key, value in flags.items()]
        return " ".join(words)

    def _run(self, remote: str, config: BenchmarkModelConfig, *, profile: bool) -> BenchmarkOutput:
        out = self.adb.shell(self.command(remote, config, profile=profile))
        return parse_benchmark_output(out)

    def _cleanup(self, remote: str) -> None:
        try:
            self.adb.remove(remote)
        except RunnerError as exc:  # the measurement stands; a stray file is only logged
            log.warning("could not remove %s from phone %s: %s", remote, self.adb.serial, exc)

    @contextlib.contextmanager
    def _performance_mode(self) -> Iterator[None]:
        """Android's fixed-performance mode (12+: clocks held, no thermal boost) for the
        duration of the job, when the agent was started with it."""
        if not self.fixed_performance:
            yield
            return
        self._set_fixed_performance(True)
        try:
            yield
        finally:
            try:
                self._set_fixed_performance(False)
            except RunnerError as exc:
                log.warning("could not leave fixed-performance mode: %s", exc)

    def _set_fixed_performance(self, on: bool) -> None:
        text = self.adb.shell(f"cmd power set-fixed-performance-mode-enabled {_flag(on)}")
        if text.strip():  # the command prints nothing when it works
            raise RunnerUnavailable(
                f"phone {self.adb.serial} has no fixed-performance mode (Android 12+): "
                f"{text.strip()[:300]}"
            )


def _input_shapes(data: bytes) -> dict[str, list[int]]:
    """The model's input shapes, read from the file (the phone does not print them); empty
    where this host cannot read TFLite's schema (no ai-edge-litert)."""
    if not is_tflite(data):
        raise RunnerError("not a TFLite model (no TFL3 flatbuffer identifier)")
    try:
        inputs = summarize_tflite(data).inputs
    except ModelInvalid as exc:
        log.info("input shapes not read: %s", exc)
        return {}
    return {t.name: [d if isinstance(d, int) and d > 0 else 1 for d in t.shape] for t in inputs}


def _flag(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _ms(us: float | None) -> float | None:
    return None if us is None else us / US_PER_MS


def _warmup(out: BenchmarkOutput) -> WarmupInfo:
    stats = out.warmup
    if stats is None or stats.avg_us is None:
        return WarmupInfo(n=0, total_ms=0.0)
    return WarmupInfo(n=stats.count, total_ms=stats.count * stats.avg_us / US_PER_MS)


def _ops(out: BenchmarkOutput, provider: str) -> tuple[OpTiming, ...]:
    if not out.ops:
        raise BenchmarkOutputError(
            "benchmark_model printed no operator-wise profile with --enable_op_profiling=true"
        )
    runs = out.profiled_runs.count if out.profiled_runs is not None else 1
    return tuple(
        OpTiming(
            node_name=row.name,
            op_type=row.node_type,
            provider=_row_provider(row, provider),
            dur_us=row.avg_ms * US_PER_MS,
            n=max(runs, 1),
            source_nodes=[],
        )
        for row in out.ops
    )


def _row_provider(row: OpRow, delegate: str) -> str:
    """A row the delegate ran is named ``Delegate/...``; the rest ran on builtin kernels."""
    return delegate if row.name.startswith("Delegate/") else "builtin"


def _op_profile(out: BenchmarkOutput, ops: tuple[OpTiming, ...]) -> dict[str, Any]:
    return {
        "tool": TOOL,
        # benchmark_model's profile has each op's mean over the runs, not every run
        "statistic": "mean",
        "runs": out.profiled_runs.count if out.profiled_runs is not None else None,
        "warmup_runs": PROFILE_WARMUP_RUNS,
        "nodes_executed": out.nodes_executed,
        "mapped_by": None,
        "sum_us": sum(op.dur_us for op in ops),
    }


#: Android's thermal status scale: 0 none, 1 light throttling, ... 6 shutdown. Any throttling
#: changes the numbers, so a run that saw over 0 is ``throttled`` (latlab.quality).
THERMAL_LIMIT = 0


def _thermal_host(before: int | None, after: int | None) -> dict[str, int] | None:
    """The host report latlab.quality reads: the hotter of the two readings, and the limit."""
    readings = [r for r in (before, after) if r is not None]
    if not readings:
        return None
    return {"thermal": max(readings), "thermal_limit": THERMAL_LIMIT}
