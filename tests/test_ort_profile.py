"""Profiled kernels map back to the uploaded graph's nodes through tensor names."""

from __future__ import annotations

import onnx
from onnx import helper

from latlab.agent.ort_profile import KernelTime, map_to_source, parse_profile, unmapped


def graph(*nodes: tuple[str, str, list[str], list[str]]) -> onnx.GraphProto:
    """(name, op_type, inputs, outputs) tuples -> a graph (shapes do not matter here)."""
    return helper.make_graph(
        [helper.make_node(op, ins, outs, name=name) for name, op, ins, outs in nodes], "g", [], []
    )


def kernels(*names: str) -> list[KernelTime]:
    return [KernelTime(n, "Op", "CPUExecutionProvider", 10.0, 3) for n in names]


def sources(rows: list, name: str) -> list[str]:
    return next(r.source_nodes for r in rows if r.node_name == name)


ORIGINAL = graph(
    ("conv", "Conv", ["x", "w"], ["c"]),
    ("bn", "BatchNormalization", ["c"], ["b"]),
    ("relu", "Relu", ["b"], ["r"]),
    ("id", "Identity", ["r"], ["i"]),
    ("fc", "Gemm", ["i", "fw"], ["y"]),
)


def test_a_fused_kernel_lists_every_node_it_computes() -> None:
    optimized = graph(("conv", "FusedConv", ["x", "w"], ["r"]), ("fc", "Gemm", ["r", "fw"], ["y"]))
    rows = map_to_source(kernels("conv", "fc"), ORIGINAL, optimized)
    assert sources(rows, "conv") == ["conv", "bn", "relu"]
    assert sources(rows, "fc") == ["id", "fc"]  # the removed Identity goes with its consumer


def test_an_nchwc_chain_is_split_at_its_named_kernels() -> None:
    original = graph(
        ("c1", "Conv", ["x", "w1"], ["t1"]),
        ("r1", "Relu", ["t1"], ["a1"]),
        ("c2", "Conv", ["a1", "w2"], ["t2"]),
        ("r2", "Relu", ["t2"], ["a2"]),
        ("pool", "GlobalAveragePool", ["a2"], ["p"]),
    )
    optimized = graph(
        ("ReorderInput", "ReorderInput", ["x"], ["tok0"]),
        ("a1_nchwc", "Conv", ["tok0", "w1"], ["tok1"]),
        ("a2_nchwc", "Conv", ["tok1", "w2"], ["tok2"]),
        ("ReorderOutput", "ReorderOutput", ["tok2"], ["a2"]),
        ("pool", "GlobalAveragePool", ["a2"], ["p"]),
    )
    rows = map_to_source(
        kernels("ReorderInput", "a1_nchwc", "a2_nchwc", "ReorderOutput", "pool"),
        original,
        optimized,
    )
    assert sources(rows, "a1_nchwc") == ["c1", "r1"]
    assert sources(rows, "a2_nchwc") == ["c2", "r2"]
    assert sources(rows, "ReorderInput") == [] and sources(rows, "ReorderOutput") == []
    assert sources(rows, "pool") == ["pool"]


def test_constant_folded_nodes_are_listed_by_no_kernel() -> None:
    original = graph(
        ("shape", "Shape", ["w"], ["s"]),
        ("reshape", "Reshape", ["x", "s"], ["y"]),
    )
    optimized = graph(("reshape", "Reshape", ["x", "s"], ["y"]))  # "s" is now an initializer
    rows = map_to_source(kernels("reshape"), original, optimized)
    assert sources(rows, "reshape") == ["reshape"]


def test_an_unoptimised_graph_maps_one_to_one() -> None:
    rows = map_to_source(kernels("conv", "bn", "relu", "id", "fc"), ORIGINAL, ORIGINAL)
    assert [r.source_nodes for r in rows] == [["conv"], ["bn"], ["relu"], ["id"], ["fc"]]


def test_the_profile_gives_the_median_per_node_after_the_skipped_runs() -> None:
    def event(name: str, dur: int) -> dict[str, object]:
        return {
            "cat": "Node",
            "name": f"{name}_kernel_time",
            "dur": dur,
            "args": {"op_name": "Conv", "provider": "CPUExecutionProvider"},
        }

    events = [
        {"cat": "Session", "name": "model_run", "dur": 999},
        event("conv", 500),  # warm-up, skipped
        event("conv", 10),
        event("conv", 30),
        event("conv", 20),
        {"cat": "Node", "name": "conv_fence_before", "dur": 1},
    ]
    [k] = parse_profile(events, skip_runs=1)
    assert (k.node_name, k.op_type, k.dur_us, k.n) == ("conv", "Conv", 20.0, 3)


def test_a_region_without_anchors_lists_all_its_nodes_on_each_of_its_kernels() -> None:
    original = graph(("a", "MatMul", ["x", "w"], ["t"]), ("b", "Add", ["t", "c"], ["y"]))
    optimized = graph(
        ("split_0", "Op", ["x", "w"], ["tok"]), ("split_1", "Op", ["tok", "c"], ["y"])
    )
    rows = map_to_source(kernels("split_0", "split_1"), original, optimized)
    assert [r.source_nodes for r in rows] == [["a", "b"], ["a", "b"]]


def test_a_kernel_missing_from_the_optimised_graph_lists_no_source() -> None:
    rows = map_to_source(kernels("conv", "mystery"), ORIGINAL, ORIGINAL)
    assert sources(rows, "mystery") == []


def test_unmapped_rows_keep_the_kernel_times() -> None:
    [row] = unmapped(kernels("trt_engine"))
    assert (row.node_name, row.dur_us, row.n, row.source_nodes) == ("trt_engine", 10.0, 3, [])


def test_the_profile_lists_kernels_in_execution_order_and_ignores_other_events() -> None:
    events: list[dict[str, object]] = []
    for _ in range(2):
        events.append({"cat": "Session", "name": "model_run", "dur": 999})
        for name, op in [("b", "Conv"), ("a", "Relu")]:
            events.append({"cat": "Node", "name": f"{name}_fence_before", "dur": 0})
            events.append(
                {"cat": "Node", "name": f"{name}_kernel_time", "dur": 5, "args": {"op_name": op}}
            )
    rows = parse_profile(events)
    assert [(k.node_name, k.op_type, k.provider, k.n) for k in rows] == [
        ("b", "Conv", None, 2),
        ("a", "Relu", None, 2),
    ]
