"""The onnxruntime runner: end-to-end samples from a plain session, per-op times from a
separate profiled session (the profiler costs microseconds per node per run)."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import onnx
import onnxruntime as ort

from agent.errors import RunnerError, RunnerUnavailable
from agent.inputs import make_inputs
from agent.ort_profile import kernel_times, map_to_source, unmapped
from agent.protocol import run_protocol
from agent.runners.base import Timing
from latlab.graph import unique_node_names
from latlab.onnx_summary import external_data_tensors
from latlab.schemas import (
    ExecutionProvider,
    GraphOptimization,
    OpTiming,
    RuntimeConfig,
    RuntimeInfo,
)

__all__ = ["OrtRunner"]

log = logging.getLogger(__name__)

OPT_LEVELS = {
    GraphOptimization.disabled: ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    GraphOptimization.basic: ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    GraphOptimization.extended: ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    GraphOptimization.all: ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
#: Warm-up runs of the profiled session; their events are dropped from the profile.
PROFILE_WARMUP_RUNS = 3
ORT_LOG_ERROR = 3
#: How onnxruntime refuses to save a graph that a provider compiled (TensorRT).
COMPILED_NODES = "contains compiled nodes"


class OrtRunner:
    name = "onnxruntime"

    def info(self) -> RuntimeInfo:
        return RuntimeInfo(
            name=self.name, version=ort.__version__, providers=ort.get_available_providers()
        )

    def time(
        self, model_path: Path, config: RuntimeConfig, should_stop: Callable[[], bool]
    ) -> Timing:
        started = time.perf_counter()
        model = _load_named(model_path)
        data = model.SerializeToString()
        providers = _providers(config.execution_provider)
        with _cpu_affinity(config.cpu_affinity):
            sess = _session(data, _options(config), providers)
            feeds, shapes = make_inputs(sess.get_inputs(), config.seed)
            # run() returns host numpy arrays: on CUDA/TensorRT it waits for the device, so
            # the clock is read after the GPU work is done.
            result = run_protocol(
                partial(_run, sess, feeds),
                warmup_runs=config.warmup_runs,
                warmup_s=config.warmup_s,
                timed_runs=config.timed_runs,
                timed_s=config.timed_s,
                should_stop=should_stop,
            )
            provider = sess.get_providers()[0]
            del sess
            ops: tuple[OpTiming, ...] = ()
            op_profile = None
            if config.profile_ops:
                ops, mapped = _profile(model, data, config, providers, feeds, should_stop)
                op_profile = {
                    "graph_optimization": config.graph_optimization.value,
                    "runs": config.profile_runs,
                    "warmup_runs": PROFILE_WARMUP_RUNS,
                    # None: the provider compiled nodes, so no optimised graph to map through
                    "mapped_by": "tensor names, then kernel names" if mapped else None,
                    "sum_us": sum(op.dur_us for op in ops),
                }
        return Timing(
            runtime=self.name,
            runtime_version=ort.__version__,
            provider=provider,
            threads=config.threads,
            input_shapes=shapes,
            warmup=result.warmup,
            samples_ms=result.samples_ms,
            timing_wall_s=time.perf_counter() - started,
            op_profile=op_profile,
            ops=ops,
        )


def _run(sess: ort.InferenceSession, feeds: dict[str, Any]) -> object:
    try:
        return sess.run(None, feeds)
    except Exception as exc:  # onnxruntime's own exception types, translated here
        raise RunnerError(f"onnxruntime failed to run the model: {exc}") from exc


def _load_named(path: Path) -> onnx.ModelProto:
    """Load the model and give every node a unique name (profiler rows are keyed by name)."""
    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except Exception as exc:
        raise RunnerError(f"not a loadable ONNX model: {exc}") from exc
    if external_data_tensors(model):
        raise RunnerError("the model references external data files")
    for node, name in zip(model.graph.node, unique_node_names(model.graph), strict=True):
        node.name = name
    return model


def _providers(requested: ExecutionProvider) -> list[str]:
    available = ort.get_available_providers()
    if requested.value not in available:
        raise RunnerUnavailable(
            f"{requested.value} is not available here (onnxruntime {ort.__version__} has "
            f"{', '.join(available)})"
        )
    if requested is ExecutionProvider.cpu:
        return [requested.value]
    return [requested.value, ExecutionProvider.cpu.value]


def _options(config: RuntimeConfig) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = config.threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = OPT_LEVELS[config.graph_optimization]
    opts.log_severity_level = ORT_LOG_ERROR
    return opts


def _session(data: bytes, opts: ort.SessionOptions, providers: list[str]) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(data, opts, providers=providers)
    except Exception as exc:  # onnxruntime's own exception types, translated here
        raise RunnerError(f"onnxruntime cannot load the model: {exc}") from exc


def _profile(
    model: onnx.ModelProto,
    data: bytes,
    config: RuntimeConfig,
    providers: list[str],
    feeds: dict[str, Any],
    should_stop: Callable[[], bool],
) -> tuple[tuple[OpTiming, ...], bool]:
    """Per-kernel rows from a separate profiled session, and whether they could be mapped to
    the uploaded graph's nodes (through the optimised graph the session saves)."""
    with tempfile.TemporaryDirectory(prefix="latlab-profile-") as tmp:
        optimized_path = Path(tmp) / "optimized.onnx"
        opts = _options(config)
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tmp) / "profile")
        opts.optimized_model_filepath = str(optimized_path)
        try:
            sess = _session(data, opts, providers)
        except RunnerError as exc:
            # A compiling provider (TensorRT) cannot save its graph; profile it unmapped.
            if COMPILED_NODES not in str(exc):
                raise
            log.info("optimised graph not saved (%s); per-op rows left unmapped", exc)
            opts.optimized_model_filepath = ""
            sess = _session(data, opts, providers)
        run_protocol(
            partial(_run, sess, feeds),
            warmup_runs=0,
            warmup_s=0,
            timed_runs=PROFILE_WARMUP_RUNS + config.profile_runs,
            timed_s=0,
            should_stop=should_stop,
        )
        profile_path = Path(sess.end_profiling())
        del sess
        kernels = kernel_times(profile_path, skip_runs=PROFILE_WARMUP_RUNS)
        if not optimized_path.exists() or not opts.optimized_model_filepath:
            return tuple(unmapped(kernels)), False
        optimized = onnx.load_model(str(optimized_path), load_external_data=False)
    return tuple(map_to_source(kernels, model.graph, optimized.graph)), True


@contextlib.contextmanager
def _cpu_affinity(cpus: list[int] | None) -> Iterator[None]:
    if not cpus:
        yield
        return
    if not hasattr(os, "sched_setaffinity"):
        log.warning("CPU affinity is not supported on this platform; ignored")
        yield
        return
    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, cpus)
    except OSError as exc:
        raise RunnerError(f"cannot pin to CPUs {cpus}: {exc}") from exc
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)
