"""The onnxruntime runner on real models: samples from an unprofiled session, per-op rows from
a profiled one, errors as types."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from latlab.agent.errors import Interrupted, RunnerError, RunnerUnavailable
from latlab.agent.inputs import make_inputs
from latlab.agent.runners import available_runners, load_runner
from latlab.agent.runners.ort import OrtRunner, device_binding, provider_chain, usable_providers
from latlab.demo_models import DEMO_CNNS, make_cnn
from latlab.runtimes.onnxruntime import ExecutionProvider, GraphOptimization, OnnxRuntimeConfig

FAST = OnnxRuntimeConfig(
    protocol="fixed", warmup_runs=2, warmup_s=0, timed_runs=5, timed_s=0, profile_runs=2
)


def save(model: onnx.ModelProto, tmp_path: Path, name: str = "m.onnx") -> Path:
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def never() -> bool:
    return False


def compute_nodes(model: onnx.ModelProto) -> set[str]:
    return {n.name for n in model.graph.node}


@pytest.mark.parametrize("spec", DEMO_CNNS, ids=lambda s: s.name)
@pytest.mark.parametrize("level", list(GraphOptimization), ids=lambda g: g.value)
def test_every_node_of_a_demo_cnn_is_covered_by_the_per_op_rows(
    tmp_path: Path, spec: object, level: GraphOptimization
) -> None:
    model = make_cnn(spec)  # type: ignore[arg-type]
    timing = OrtRunner().time(
        save(model, tmp_path), FAST.model_copy(update={"graph_optimization": level}), never
    )
    covered = [name for op in timing.ops for name in op.source_nodes]
    assert sorted(covered) == sorted(compute_nodes(model))  # each node once, none lost
    assert all(op.n == FAST.profile_runs for op in timing.ops)
    assert timing.op_profile is not None and timing.op_profile["graph_optimization"] == level.value


def test_fused_conv_bn_relu_is_one_kernel_at_full_optimisation(tmp_path: Path) -> None:
    timing = OrtRunner().time(save(make_cnn(DEMO_CNNS[0]), tmp_path), FAST, never)
    assert any(op.source_nodes == ["b0.conv", "b0.bn", "b0.relu"] for op in timing.ops)


def test_without_optimisation_each_kernel_is_its_own_node(tmp_path: Path) -> None:
    config = FAST.model_copy(update={"graph_optimization": GraphOptimization.disabled})
    timing = OrtRunner().time(save(make_cnn(DEMO_CNNS[0]), tmp_path), config, never)
    assert all(op.source_nodes == [op.node_name] for op in timing.ops)


def test_the_timing_carries_its_samples_and_provenance(tmp_path: Path) -> None:
    timing = OrtRunner().time(save(make_cnn(DEMO_CNNS[0]), tmp_path), FAST, never)
    assert len(timing.samples_ms) == 5 and all(s > 0 for s in timing.samples_ms)
    assert timing.warmup.n == 2
    assert timing.runtime == "onnxruntime" and timing.runtime_version == ort.__version__
    assert timing.provider == "CPUExecutionProvider" and timing.threads == 1
    assert timing.input_shapes == {"input": [1, 3, 96, 96]}
    assert timing.timing_wall_s > 0


def symbolic_unnamed_model() -> onnx.ModelProto:
    """Two unnamed nodes, a symbolic batch dimension and an int64 input."""
    nodes = [
        helper.make_node("Cast", ["ids"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["x", "f"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "sym",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8]),
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 8]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_symbolic_dims_are_timed_as_one_and_unnamed_nodes_get_rows(tmp_path: Path) -> None:
    timing = OrtRunner().time(save(symbolic_unnamed_model(), tmp_path), FAST, never)
    assert timing.input_shapes == {"x": [1, 8], "ids": [1, 8]}
    assert sorted(n for op in timing.ops for n in op.source_nodes) == ["Add_1", "Cast_0"]


@pytest.mark.parametrize("data", [b"", b"garbage" * 50], ids=["empty", "garbage"])
def test_a_model_onnxruntime_cannot_load_is_a_runner_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(data)
    with pytest.raises(RunnerError):
        OrtRunner().time(path, FAST, never)


def test_an_unavailable_provider_is_refused(tmp_path: Path) -> None:
    if "TensorrtExecutionProvider" in ort.get_available_providers():
        pytest.skip("TensorRT is available on this machine")
    config = FAST.model_copy(update={"execution_provider": ExecutionProvider.tensorrt})
    with pytest.raises(RunnerUnavailable, match="TensorrtExecutionProvider"):
        OrtRunner().time(save(make_cnn(DEMO_CNNS[0]), tmp_path), config, never)


def test_a_gpu_provider_falls_back_along_the_usual_chain() -> None:
    cpu, cuda, trt = (p.value for p in ExecutionProvider)
    assert provider_chain(ExecutionProvider.cpu, [cpu]) == [cpu]
    assert provider_chain(ExecutionProvider.cuda, [trt, cuda, cpu]) == [cuda, cpu]
    assert provider_chain(ExecutionProvider.tensorrt, [trt, cuda, cpu]) == [trt, cuda, cpu]
    assert provider_chain(ExecutionProvider.tensorrt, [trt, cpu]) == [trt, cpu]
    with pytest.raises(RunnerUnavailable, match="CUDAExecutionProvider is not available"):
        provider_chain(ExecutionProvider.cuda, [cpu])


def test_a_gpu_provider_that_cannot_start_here_is_not_advertised() -> None:
    """onnxruntime starts the CPU instead of a GPU provider it cannot start; an agent that
    advertised it would take GPU jobs and time them on the CPU."""
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("CUDA is available on this machine")
    listed = ["CUDAExecutionProvider", "TensorrtExecutionProvider", "CPUExecutionProvider"]
    assert usable_providers(listed) == ["CPUExecutionProvider"]
    assert OrtRunner().info().providers == usable_providers(ort.get_available_providers())


def test_inputs_bound_on_a_device_give_the_same_outputs_as_the_host_call(
    tmp_path: Path,
) -> None:
    """The GPU path's IO binding (inputs placed once, outputs left on the device), exercised
    here with the CPU as the device."""
    sess = ort.InferenceSession(
        make_cnn(DEMO_CNNS[0]).SerializeToString(), providers=["CPUExecutionProvider"]
    )
    feeds, _ = make_inputs(sess.get_inputs(), seed=0)
    binding = device_binding(sess, feeds, "cpu")
    sess.run_with_iobinding(binding)
    bound = binding.copy_outputs_to_cpu()
    host = sess.run(None, feeds)
    assert len(bound) == len(host) == 1
    np.testing.assert_allclose(bound[0], host[0], rtol=1e-6)


@pytest.mark.skipif(
    "CUDAExecutionProvider" not in ort.get_available_providers(),
    reason="no CUDA here: the GPU path needs an NVIDIA GPU and pip install 'latlab[gpu]'",
)
@pytest.mark.parametrize(
    "provider", [ExecutionProvider.cuda, ExecutionProvider.tensorrt], ids=["cuda", "tensorrt"]
)
def test_a_model_is_timed_on_the_gpu_with_synchronised_device_resident_runs(
    tmp_path: Path, provider: ExecutionProvider
) -> None:
    if provider.value not in ort.get_available_providers():
        pytest.skip(f"{provider.value} is not available here")
    config = FAST.model_copy(update={"execution_provider": provider})
    timing = OrtRunner().time(save(make_cnn(DEMO_CNNS[0]), tmp_path), config, never)
    assert timing.provider == provider.value
    assert timing.provenance is not None and "host" in timing.provenance
    assert {k: v for k, v in timing.provenance.items() if k != "host"} == {
        "timing": "io_binding",
        "device": "cuda:0",
        "synchronised": True,
    }
    assert len(timing.samples_ms) == 5 and all(s > 0 for s in timing.samples_ms)
    # each kernel says which provider ran it; the convolutions run on the GPU
    gpu_ops = [op for op in timing.ops if op.provider != "CPUExecutionProvider"]
    assert gpu_ops and all(
        op.provider in (provider.value, "CUDAExecutionProvider") for op in gpu_ops
    )


def test_a_stop_request_interrupts_the_measurement(tmp_path: Path) -> None:
    config = FAST.model_copy(update={"timed_s": 60.0})
    calls = []

    def stop_after_a_few() -> bool:
        calls.append(1)
        return len(calls) > 20

    with pytest.raises(Interrupted):
        OrtRunner().time(save(make_cnn(DEMO_CNNS[0]), tmp_path), config, stop_after_a_few)


def test_the_registry_loads_the_onnxruntime_runner() -> None:
    assert isinstance(load_runner("onnxruntime"), OrtRunner)
    assert "onnxruntime" in available_runners()
    with pytest.raises(RunnerUnavailable, match="unknown runtime"):
        load_runner("tensorflow")


def test_cpu_affinity_pins_and_restores(tmp_path: Path) -> None:
    before = os.sched_getaffinity(0)
    config = FAST.model_copy(update={"cpu_affinity": [min(before)]})
    OrtRunner().time(save(make_cnn(DEMO_CNNS[0]), tmp_path), config, never)
    assert os.sched_getaffinity(0) == before


def test_repeated_node_names_are_made_unique(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="act"),
        helper.make_node("Relu", ["a"], ["b"], name="act"),
        helper.make_node("Relu", ["b"], ["y"], name="act_1"),
    ]
    graph = helper.make_graph(
        nodes,
        "dup",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    config = FAST.model_copy(update={"graph_optimization": GraphOptimization.disabled})
    timing = OrtRunner().time(save(model, tmp_path), config, never)
    assert [op.source_nodes for op in timing.ops] == [["act"], ["act_1_1"], ["act_1"]]


@dataclass(frozen=True)
class Spec:
    name: str
    type: str
    shape: list[int | str | None]


def test_inputs_are_seeded_typed_and_shaped_with_free_dims_as_one() -> None:
    specs = [
        Spec("f", "tensor(float)", ["batch", 3, None]),
        Spec("h", "tensor(float16)", [2]),
        Spec("ids", "tensor(int64)", [1, 64]),
        Spec("mask", "tensor(bool)", [5]),
    ]
    feeds, shapes = make_inputs(specs, seed=7)
    again, _ = make_inputs(specs, seed=7)
    assert shapes == {"f": [1, 3, 1], "h": [2], "ids": [1, 64], "mask": [5]}
    assert {k: v.dtype for k, v in feeds.items()} == {
        "f": np.float32,
        "h": np.float16,
        "ids": np.int64,
        "mask": np.bool_,
    }
    assert set(np.unique(feeds["ids"])) <= {0, 1}
    assert all(np.array_equal(feeds[k], again[k]) for k in feeds)


def test_an_input_type_that_cannot_be_generated_is_a_runner_error() -> None:
    with pytest.raises(RunnerError, match=r"'text'.*tensor\(string\)"):
        make_inputs([Spec("text", "tensor(string)", [1])], seed=0)
