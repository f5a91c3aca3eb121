"""Lookup tables: kernels as the runtime runs them, keys, micro-models, building, prediction,
fallback and the formats."""

from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import yaml

from latlab.agent.runners.ort import OrtRunner
from latlab.export.onnx import to_onnx
from latlab.graph import GraphBuilder, OpGraph
from latlab.lut.build import (
    MicroTiming,
    ProfiledModel,
    build_from_micro,
    build_from_profiles,
    calibrate,
)
from latlab.lut.errors import LutError, MissingEntry
from latlab.lut.fusion import DUPLICATE, fuse
from latlab.lut.micro import kernel_graph, unique_kernels
from latlab.lut.predict import kernel_latencies_us, predict
from latlab.lut.table import LookupTable
from latlab.runtimes.onnxruntime import ONNXRUNTIME_CPU, OnnxRuntimeConfig
from latlab.runtimes.tflite import TFLITE
from latlab.spaces import get_space
from latlab.spaces.nb201 import Nb201

SPACE = Nb201()
FAST = OnnxRuntimeConfig(
    protocol="fixed", warmup_runs=2, warmup_s=0, timed_runs=10, timed_s=0, profile_runs=5
)
ALL_3X3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def block(name: str, *, stride: int = 1, groups: int = 1, prefix: str = "x") -> OpGraph:
    b = GraphBuilder(name, (1, 16, 16, 16))
    y = b.relu(
        f"{prefix}.relu",
        b.batch_norm(
            f"{prefix}.bn", b.conv(f"{prefix}.conv", b.input, 16, 3, stride, groups=groups)
        ),
    )
    return b.build(y)


# --------------------------------------------------------------------------- kernels and keys


def test_conv_bn_relu_is_one_kernel_keyed_by_shape_not_by_name() -> None:
    [k1] = fuse(block("a", prefix="first"), ONNXRUNTIME_CPU)
    [k2] = fuse(block("b", prefix="second"), ONNXRUNTIME_CPU)
    assert k1.op_type == "Conv+BatchNormalization+Relu" and k1.nodes == (
        "first.conv",
        "first.bn",
        "first.relu",
    )
    assert k1.key == k2.key and "first" not in k1.key


def test_stride_and_groups_change_the_kernel_key() -> None:
    keys = {
        fuse(block("a"), ONNXRUNTIME_CPU)[0].key,
        fuse(block("s", stride=2), ONNXRUNTIME_CPU)[0].key,
        fuse(block("g", groups=4), ONNXRUNTIME_CPU)[0].key,
    }
    assert len(keys) == 3


def test_identical_relus_on_one_tensor_are_one_kernel_and_then_fuse_into_the_conv() -> None:
    b = GraphBuilder("dup", (1, 8, 8, 8))
    c = b.batch_norm("bn", b.conv("conv", b.input, 8, 3))
    r1, r2 = b.relu("r1", c), b.relu("r2", c)  # NB201: one ReLU per edge out of a node
    graph = b.build(b.add("sum", b.conv("c1", r1, 8, 1), b.conv("c2", r2, 8, 1)))
    kernels = fuse(graph, ONNXRUNTIME_CPU)
    by_node = {n: k for k in kernels for n in k.nodes}
    assert by_node["conv"].op_type == "Conv+BatchNormalization+Relu"  # r2 merged away first
    assert by_node["r2"].key == DUPLICATE and not by_node["r2"].costs_time
    # the Add joins the first conv feeding it; the other conv stays on its own
    assert by_node["c1"].op_type == "Conv+Add" and by_node["c2"].op_type == "Conv"
    assert sorted(n for k in kernels for n in k.nodes) == sorted(n.name for n in graph.nodes)


def test_the_rules_give_as_many_kernels_as_onnxruntime_runs(tmp_path: Path) -> None:
    """Checked against the profiler: every profiled kernel row with source nodes, plus the one
    BatchNormalization+Relu of the head that onnxruntime runs as an unnamed NCHWc conv. (Cut-off
    cells, whose ``x * 0`` chains onnxruntime folds into the stem conv one after the other, are
    the known exception: campaigns never sample them.)"""
    for arch in SPACE.sample(4, seed=0):
        graph = SPACE.graph(arch)
        path = tmp_path / f"{arch.index}.onnx"
        path.write_bytes(to_onnx(graph).SerializeToString())
        timing = OrtRunner().time(path, FAST, lambda: False)
        mapped = [op for op in timing.ops if op.source_nodes]
        ours = [k for k in fuse(graph, ONNXRUNTIME_CPU) if k.costs_time]
        assert len(ours) == len(mapped) + 1, arch.string


def test_tflite_rules_fuse_the_activation_into_an_add() -> None:
    b = GraphBuilder("t", (1, 4, 4, 4))
    graph = b.build(b.relu("r", b.add("a", b.input, b.input)))
    assert [k.op_type for k in fuse(graph, TFLITE)] == ["Add+Relu"]


# --------------------------------------------------------------------------- micro-models


@pytest.mark.parametrize("space_name", ["nb201", "fbnet", "ofa"])
def test_a_micro_model_is_the_kernel_alone_with_its_shapes_and_it_runs(space_name: str) -> None:
    """NB201's cells; FBNet's grouped 1x1 convs; OFA's h-swish and squeeze-excite (a Mul of two
    activations: both become the micro-model's inputs)."""
    space = get_space(space_name)
    archs = [space.parse(ALL_3X3)] if space_name == "nb201" else space.sample(3, seed=0)
    micro = unique_kernels([space.graph(a) for a in archs], ONNXRUNTIME_CPU)
    assert all(kernel.key == key for key, (kernel, _) in micro.items())
    for key, (kernel, sub) in micro.items():
        assert [n.name for n in sub.nodes] == list(kernel.nodes)
        sess = ort.InferenceSession(
            to_onnx(sub).SerializeToString(), providers=["CPUExecutionProvider"]
        )
        feeds = {i.name: np.zeros(i.shape, np.float32) for i in sess.get_inputs()}
        [out] = sess.run(None, feeds)
        assert out.shape == sub.tensors[sub.outputs[0]].shape, key


def test_kernel_graph_takes_both_inputs_of_a_fused_add() -> None:
    b = GraphBuilder("r", (1, 8, 8, 8))
    graph = b.build(
        b.add("sum", b.batch_norm("bn", b.conv("conv", b.input, 8, 3)), b.relu("skip", b.input))
    )
    kernel = next(
        k for k in fuse(graph, ONNXRUNTIME_CPU) if k.op_type == "Conv+BatchNormalization+Add"
    )
    sub = kernel_graph(graph, kernel)
    assert set(sub.inputs) == {"input", "skip"} and sub.outputs == ("sum",)


# --------------------------------------------------------------------------- building and predicting


def profiled(archs: list[str], tmp: Path) -> list[ProfiledModel]:
    out = []
    for i, arch in enumerate(archs):
        graph = SPACE.graph(SPACE.parse(arch))
        path = tmp / f"{i}.onnx"
        path.write_bytes(to_onnx(graph).SerializeToString())
        timing = OrtRunner().time(path, FAST, lambda: False)
        median = float(np.median(timing.samples_ms))
        out.append(
            ProfiledModel(graph, median, [(op.dur_us, op.source_nodes) for op in timing.ops])
        )
    return out


@pytest.fixture(scope="module")
def measured() -> list[ProfiledModel]:
    with tempfile.TemporaryDirectory() as tmp:
        return profiled([a.string for a in SPACE.sample(12, seed=7)], Path(tmp))


def test_a_lut_from_profiles_predicts_its_archs_with_the_error_reported(
    measured: list[ProfiledModel],
) -> None:
    table = build_from_profiles(measured, ONNXRUNTIME_CPU, {"device": "here"})
    cal = table.calibration
    assert cal.n_models == 12 and cal.rmse_ms is not None and cal.within_10pct is not None
    errors = [abs(predict(table, m.graph).latency_ms - m.median_ms) / m.median_ms for m in measured]
    # the calibration reports exactly the error of these predictions
    assert cal.within_10pct == pytest.approx(np.mean(np.array(errors) <= 0.10))
    assert all(predict(table, m.graph).estimated == () for m in measured)


def test_missing_keys_are_estimated_and_listed(measured: list[ProfiledModel]) -> None:
    table = build_from_profiles(measured, ONNXRUNTIME_CPU)
    wide = Nb201(channels=(24, 48, 96))  # every conv shape is new
    p = predict(table, wide.graph(wide.parse(ALL_3X3)))
    assert p.estimated and all(e.latency_us >= 0 for e in p.estimated)
    assert {e.op_type for e in p.estimated} >= {"Conv+BatchNormalization"}
    assert p.latency_ms > predict(table, SPACE.graph(SPACE.parse(ALL_3X3))).latency_ms


def test_an_op_with_no_entry_and_no_fallback_is_an_error(measured: list[ProfiledModel]) -> None:
    table = build_from_profiles(measured, ONNXRUNTIME_CPU)
    b = GraphBuilder("odd", (1, 8, 8, 8))
    graph = b.build(
        b.avg_pool("p", b.conv("c", b.input, 8, 5, 2), 3, 1, 1, count_include_pad=False)
    )
    no_conv_fallback = LookupTable(
        table.rules, table.source, table.entries, table.calibration,
        {k: v for k, v in table.fallback.items() if not k.startswith("Conv")},
    )  # fmt: skip
    with pytest.raises(MissingEntry, match="Conv") as refused:
        predict(no_conv_fallback, graph)
    # short (no 500-character key) and saying what to do
    assert len(str(refused.value)) < 400 and "latlab lut build" in str(refused.value)


def test_a_micro_model_lut_is_calibrated_on_whole_models(
    measured: list[ProfiledModel], tmp_path: Path
) -> None:
    micro = unique_kernels([m.graph for m in measured], ONNXRUNTIME_CPU)
    timings = {}
    for i, (key, (kernel, sub)) in enumerate(micro.items()):
        path = tmp_path / f"k{i}.onnx"
        path.write_bytes(to_onnx(sub).SerializeToString())
        t = OrtRunner().time(path, FAST.model_copy(update={"profile_ops": False}), lambda: False)
        q25, q50, q75 = np.percentile(t.samples_ms, [25, 50, 75])
        timings[key] = MicroTiming(
            kernel.op_type,
            kernel.cost.flops,
            kernel.cost.bytes_moved,
            q50,
            q75 - q25,
            len(t.samples_ms),
        )
    table = build_from_micro(timings, ONNXRUNTIME_CPU, [(m.graph, m.median_ms) for m in measured])
    assert table.calibration.n_models == 12 and table.calibration.per_kernel_us > 0
    uncalibrated = build_from_micro(timings, ONNXRUNTIME_CPU, [])
    assert uncalibrated.calibration.n_models == 0
    assert (
        predict(table, measured[0].graph).kernels
        == predict(uncalibrated, measured[0].graph).kernels
    )


def test_building_from_nothing_is_an_error() -> None:
    with pytest.raises(LutError):
        build_from_profiles([], ONNXRUNTIME_CPU)
    with pytest.raises(LutError):
        build_from_micro({}, ONNXRUNTIME_CPU, [])


# --------------------------------------------------------------------------- formats


def test_json_round_trip_and_ofa_style_yaml(measured: list[ProfiledModel]) -> None:
    table = build_from_profiles(measured, ONNXRUNTIME_CPU, {"device": "d1"})
    again = LookupTable.from_json(json.loads(json.dumps(table.to_json())))
    assert again == table
    parsed = yaml.safe_load(table.to_yaml())
    assert set(parsed) == set(table.entries)
    key, entry = next(iter(table.entries.items()))
    assert parsed[key] == {
        "count": entry.n,
        "mean": entry.median_us / 1e3,
        "std": pytest.approx(entry.iqr_us / 1.349 / 1e3),
    }
    with pytest.raises(LutError, match="version"):
        LookupTable.from_json({**table.to_json(), "format_version": 99})


def test_the_calibration_fits_relative_error_with_a_scale_on_the_table_sum(
    measured: list[ProfiledModel],
) -> None:
    """Whole models that pay 12 % more than their kernels' entries, 2 us less per kernel and
    20 us per run (with ±1 % noise): the fit finds that and predicts within the noise, small
    models included (an absolute fit would serve the largest models first)."""
    table = build_from_profiles(measured, ONNXRUNTIME_CPU)
    rng = np.random.default_rng(0)
    truth = []
    for m in measured:
        times_us, _ = kernel_latencies_us(table, fuse(m.graph, ONNXRUNTIME_CPU))
        exact = 1.12 * sum(times_us) / 1e3 - 0.002 * len(times_us) + 0.02
        truth.append((m.graph, exact * rng.uniform(0.99, 1.01)))
    cal = calibrate(table, truth).calibration
    assert cal.scale == pytest.approx(1.12, rel=0.03)
    assert cal.within_10pct == 1.0
    fitted = replace(table, calibration=cal)
    for graph, latency_ms in truth:
        assert predict(fitted, graph).latency_ms == pytest.approx(latency_ms, rel=0.03)


def test_a_table_written_before_the_scale_reads_as_scale_one(
    measured: list[ProfiledModel],
) -> None:
    data = build_from_profiles(measured, ONNXRUNTIME_CPU).to_json()
    del data["calibration"]["scale"]
    assert LookupTable.from_json(data).calibration.scale == 1.0
