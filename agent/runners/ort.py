"""The onnxruntime runner: end-to-end samples from a plain session, per-op times from a
separate profiled session (the profiler costs microseconds per node per run)."""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import onnx
import onnxruntime as ort

from latlab.agent.errors import RunnerError, RunnerUnavailable
from latlab.agent.inputs import make_inputs
from latlab.agent.ort_profile import kernel_times, map_to_source, unmapped
from latlab.agent.protocol import Phase, run_protocol
from latlab.agent.runners.base import LoadedModel, Profile, ProtocolRunner
from latlab.graph import unique_node_names
from latlab.onnx_summary import external_data_tensors
from latlab.runtimes.onnxruntime import ExecutionProvider, GraphOptimization, OnnxRuntimeConfig
from latlab.schemas import OpTiming, RuntimeInfo

__all__ = ["OrtRunner", "device_binding", "provider_chain", "usable_providers"]

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
ORT_LOG_FATAL = 4
GPU_PROVIDERS = frozenset({ExecutionProvider.cuda.value, ExecutionProvider.tensorrt.value})
#: Where a GPU provider's inputs and outputs live during the timed runs (one agent per GPU:
#: pick it with CUDA_VISIBLE_DEVICES).
GPU_DEVICE = "cuda"
GPU_DEVICE_ID = 0
#: How onnxruntime refuses to save a graph that a provider compiled (TensorRT).
COMPILED_NODES = "contains compiled nodes"


@dataclass(kw_only=True)
class OrtModel(LoadedModel):
    """The model as loaded for the timed runs; the profiled pass loads it again from these."""

    model: onnx.ModelProto
    data: bytes
    providers: list[str]
    feeds: dict[str, Any]


class OrtRunner(ProtocolRunner[OnnxRuntimeConfig, OrtModel]):
    name = "onnxruntime"
    config_type = OnnxRuntimeConfig

    def info(self) -> RuntimeInfo:
        return RuntimeInfo(
            name=self.name,
            version=self.version(),
            providers=usable_providers(ort.get_available_providers()),
        )

    def version(self) -> str:
        return str(ort.__version__)

    def load(self, model_path: Path, config: OnnxRuntimeConfig) -> OrtModel:
        model = _load_named(model_path)
        data = model.SerializeToString()
        providers = provider_chain(config.execution_provider, ort.get_available_providers())
        sess = _session(data, _options(config), providers)
        if config.execution_provider.value not in sess.get_providers():
            raise RunnerUnavailable(
                f"{config.execution_provider.value} did not start (onnxruntime fell back "
                f"to {', '.join(sess.get_providers())}): check the GPU driver and CUDA"
            )
        feeds, shapes = make_inputs(sess.get_inputs(), config.seed)
        run_once, provenance = _timed_run(sess, feeds, config.execution_provider)
        return OrtModel(
            run_once=run_once,
            input_shapes=shapes,
            provider=sess.get_providers()[0],
            provenance=provenance or {},
            model=model,
            data=data,
            providers=providers,
            feeds=feeds,
        )

    def profile(
        self, loaded: OrtModel, config: OnnxRuntimeConfig, should_stop: Callable[[], bool]
    ) -> Profile:
        ops, mapped = _profile(
            loaded.model, loaded.data, config, loaded.providers, loaded.feeds, should_stop
        )
        return Profile(
            ops=ops,
            about={
                "graph_optimization": config.graph_optimization.value,
                "runs": config.profile_runs,
                "warmup_runs": PROFILE_WARMUP_RUNS,
                # None: the provider compiled nodes, so no optimised graph to map through
                "mapped_by": "tensor names, then kernel names" if mapped else None,
                "sum_us": sum(op.dur_us for op in ops),
            },
        )


def _timed_run(
    sess: ort.InferenceSession, feeds: dict[str, Any], provider: ExecutionProvider
) -> tuple[Callable[[], object], dict[str, Any] | None]:
    """One run for the protocol, and how it was timed where that is not the plain host call.

    On the CPU a run is ``sess.run`` with numpy inputs. On a GPU provider the inputs are copied
    to the device once, outside the timed region, and the outputs stay there (IO binding), so a
    sample is the model's work, not PCIe copies; ``run_with_iobinding`` returns only after the
    execution providers are synchronised (onnxruntime's default, set explicitly here), so the
    clock stops after the GPU work is done.
    """
    if provider is ExecutionProvider.cpu:
        return partial(_run, sess, feeds), None
    binding = device_binding(sess, feeds, GPU_DEVICE)
    options = ort.RunOptions()
    options.add_run_config_entry("disable_synchronize_execution_providers", "0")
    provenance = {
        "timing": "io_binding",
        "device": f"{GPU_DEVICE}:{GPU_DEVICE_ID}",
        "synchronised": True,
    }
    return partial(_run_bound, sess, binding, options), provenance


def device_binding(
    sess: ort.InferenceSession, feeds: dict[str, Any], device: str, device_id: int = 0
) -> ort.IOBinding:
    """The inputs copied to ``device`` once and every output bound there."""
    binding = sess.io_binding()
    try:
        for name, array in feeds.items():
            value = ort.OrtValue.ortvalue_from_numpy(array, device, device_id)
            binding.bind_ortvalue_input(name, value)
        for output in sess.get_outputs():
            binding.bind_output(output.name, device, device_id)
    except Exception as exc:  # onnxruntime's own exception types, translated here
        raise RunnerError(f"cannot place the inputs on {device}:{device_id}: {exc}") from exc
    return binding


def _run_bound(
    sess: ort.InferenceSession, binding: ort.IOBinding, options: ort.RunOptions
) -> object:
    try:
        sess.run_with_iobinding(binding, options)
    except Exception as exc:  # onnxruntime's own exception types, translated here
        raise RunnerError(f"onnxruntime failed to run the model: {exc}") from exc
    return None


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


def usable_providers(available: Sequence[str]) -> list[str]:
    """The providers this device can really run. onnxruntime lists what it was built with, and
    a GPU provider that cannot start (no GPU, no driver) falls back to the CPU with a warning;
    such a provider is not advertised, so the server never sends this device a GPU job."""
    return [p for p in available if p not in GPU_PROVIDERS or _starts(p)]


def _starts(provider: str) -> bool:
    identity = onnx.helper.make_model(
        onnx.helper.make_graph(
            [onnx.helper.make_node("Identity", ["x"], ["y"])],
            "probe",
            [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
            [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
        ),
        opset_imports=[onnx.helper.make_opsetid("", 13)],
    )
    opts = ort.SessionOptions()
    opts.log_severity_level = ORT_LOG_FATAL
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sess = ort.InferenceSession(
                identity.SerializeToString(),
                opts,
                providers=[provider, ExecutionProvider.cpu.value],
            )
    except Exception as exc:  # onnxruntime's own exception types: the provider cannot start
        log.info("%s does not start here: %s", provider, exc)
        return False
    started = provider in sess.get_providers()
    if not started:
        log.info("%s is built in but does not start here (no GPU or driver)", provider)
    return started


def provider_chain(requested: ExecutionProvider, available: Sequence[str]) -> list[str]:
    """The session's provider chain: the requested one first, then what takes the nodes it
    cannot run (TensorRT falls back to CUDA where present, everything to the CPU)."""
    if requested.value not in available:
        raise RunnerUnavailable(
            f"{requested.value} is not available here (onnxruntime {ort.__version__} has "
            f"{', '.join(available)})"
        )
    chain: list[str] = [requested.value]
    if requested is ExecutionProvider.tensorrt and ExecutionProvider.cuda.value in available:
        chain.append(ExecutionProvider.cuda.value)
    if requested is not ExecutionProvider.cpu:
        chain.append(ExecutionProvider.cpu.value)
    return chain


def _options(config: OnnxRuntimeConfig) -> ort.SessionOptions:
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
    config: OnnxRuntimeConfig,
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
            Phase(0, 0),
            Phase(PROFILE_WARMUP_RUNS + config.profile_runs, 0),
            should_stop=should_stop,
        )
        profile_path = Path(sess.end_profiling())
        del sess
        kernels = kernel_times(profile_path, skip_runs=PROFILE_WARMUP_RUNS)
        if not optimized_path.exists() or not opts.optimized_model_filepath:
            return tuple(unmapped(kernels)), False
        optimized = onnx.load_model(str(optimized_path), load_external_data=False)
    return tuple(map_to_source(kernels, model.graph, optimized.graph)), True
