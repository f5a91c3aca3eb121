"""The benchmark_model output parser: every row of the three real fixtures, with the expected
values written out; truncated output refused; node types and names with spaces and commas."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from latlab.agent.runners.benchmark_output import (
    BenchmarkOutputError,
    OpRow,
    RunStats,
    parse_benchmark_output,
)
from tests.factories import shared_path


def fixture(name: str) -> str:
    return shared_path(f"fixtures/benchmark_model/{name}").read_text()


def test_the_xnnpack_output_gives_warmup_regular_runs_and_the_regular_profile() -> None:
    out = parse_benchmark_output(fixture("xnnpack_op_profiling.txt"))
    assert out.warmup == RunStats(32, 15997.4, 19834, 15648, 14936, 21608, 1663)
    assert out.runs == RunStats(64, 15517.6, 16067, 15102, 14661, 17579, 551)
    assert (out.init_us, out.first_inference_us) == (32163, 19834)
    assert (out.warmup_avg_us, out.inference_avg_us) == (15997.4, 15517.6)
    assert out.profiled_runs == RunStats(64, 15309.2, 15808, 14892, 14470, 17363, 542)
    assert out.nodes_executed == 171
    # the initialisation profile (ModifyGraphWithDelegate, AllocateTensors) is not an op
    assert out.ops == (
        OpRow("QUANTIZE", "[tfl.quantize]:0", 0, 0.203, None, 0.199, 1.328, 0.0, 1),
        OpRow(
            "Convolution (NHWC, QC8) IGEMM",
            "Delegate/Convolution (NHWC, QC8) IGEMM:0",
            0, 0.407, None, 0.398, 2.658, 0.0, 1,
        ),
        OpRow(
            "Convolution (NHWC, QC8) DWConv",
            "Delegate/Convolution (NHWC, QC8) DWConv:1",
            1, 0.051, None, 0.428, 4.317, 0.0, 13,
        ),
        OpRow(
            "TFLite_Detection_PostProcess",
            "[StatefulPartitionedCall:3, StatefulPartitionedCall:2, StatefulPartitionedCall:1, "
            "StatefulPartitionedCall:0]:266",
            266, 3.653, None, 3.894, 23.862, 0.0, 1,
        ),
    )  # fmt: skip


def test_litert_first_column_is_a_start_time() -> None:
    out = parse_benchmark_output(fixture("litert_op_profiling.txt"))
    assert out.ops == (
        OpRow("CONV_2D", "[Unknown]:0", 0, 60.957, 0.066, None, 2.066, 0.0, 50),
        OpRow("DEPTHWISE_CONV_2D", "[Unknown]:1", 1, 49.870, 61.033, None, 1.691, 0.0, 50),
    )
    assert out.profiled_runs == RunStats(count=2, curr_us=5541350)
    assert out.nodes_executed == 2
    assert out.runs is None and out.inference_avg_us is None  # this output has no e2e line
    # told explicitly, the same column is read as the first run's duration
    as_duration = parse_benchmark_output(
        fixture("litert_op_profiling.txt"), first_column="duration"
    )
    assert [(r.start_ms, r.first_ms) for r in as_duration.ops] == [(None, 0.066), (None, 61.033)]


def test_the_readme_layout_has_a_start_column_and_average_timings() -> None:
    out = parse_benchmark_output(fixture("legacy_readme_format.txt"))
    assert out.warmup is None and out.runs is None
    assert (out.warmup_avg_us, out.init_us, out.inference_avg_us) == (83235, 38467, 79760.9)
    assert out.profiled_runs == RunStats(50, 79732, 79449, 81350, 77385, 88213, 1929)
    assert out.nodes_executed == 31
    assert out.ops == (
        OpRow(
            "CONV_2D", "[MobilenetV1/MobilenetV1/Conv2d_0/Relu6]", None,
            4.269, 0.0, 4.269, 0.107, 0.0, 0,
        ),
        OpRow(
            "DEPTHWISE_CONV_2D", "[MobilenetV1/MobilenetV1/Conv2d_1_depthwise/Relu6]", None,
            2.150, 4.270, 2.150, 0.054, 0.0, 0,
        ),
        OpRow(
            "SOFTMAX", "[MobilenetV1/Predictions/Softmax]", None,
            0.029, 79.443, 0.029, 0.001, 0.0, 0,
        ),
    )  # fmt: skip


@pytest.mark.parametrize(
    "name", ["xnnpack_op_profiling.txt", "litert_op_profiling.txt", "legacy_readme_format.txt"]
)
def test_output_cut_inside_the_op_table_is_refused(name: str) -> None:
    text = fixture(name)
    lines = text.splitlines()
    regular = next((i for i, line in enumerate(lines) if "Regular Benchmark Runs" in line), 0)
    header = next(i for i, line in enumerate(lines) if i > regular and "Run Order" in line)
    for cut in range(header + 2, header + 4):  # after the first row, and mid-way through one
        with pytest.raises(BenchmarkOutputError, match=r"truncated|does not parse"):
            parse_benchmark_output("\n".join(lines[:cut]) + "\n")
        partial = "\n".join(lines[:cut]) + "\n" + lines[cut][: len(lines[cut]) // 2]
        with pytest.raises(BenchmarkOutputError):
            parse_benchmark_output(partial)


def test_a_timing_line_cut_short_is_refused() -> None:
    text = fixture("xnnpack_op_profiling.txt")
    cut = text[: text.index("count=64 first=16067 curr=") + len("count=64 first=16067 curr=")]
    with pytest.raises(BenchmarkOutputError, match="cut short"):
        parse_benchmark_output(cut)
    with pytest.raises(BenchmarkOutputError, match="cut short"):
        parse_benchmark_output("INFO: count=64 first=16067 curr=15102 min=14661 max=17579\n")


def test_output_with_no_timings_at_all_is_refused() -> None:
    with pytest.raises(BenchmarkOutputError, match="did it run"):
        parse_benchmark_output("INFO: STARTING!\nERROR: Failed to load model x.tflite\n")


# --------------------------------------------------------------------------- property

_node_types = st.text(
    st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefgh_ (),0123456789"), min_size=1, max_size=30
).filter(lambda s: s == s.strip() and not s.split()[-1].replace(".", "").isdigit())
_names = st.text(st.sampled_from("abcdefghij/_:[], ()0123456789"), min_size=1, max_size=40).filter(
    lambda s: s == s.strip()
)
_ms = st.integers(0, 10**6).map(lambda v: v / 1000)


@given(
    rows=st.lists(
        st.tuples(_node_types, _names, _ms, _ms, _ms, st.integers(0, 10**4)),
        min_size=1,
        max_size=8,
    ),
    tabs=st.booleans(),
)
def test_any_row_reads_back_in_tab_and_space_layouts(
    rows: list[tuple[str, str, float, float, float, int]], tabs: bool
) -> None:
    columns = ["[node type]", "[first]", "[avg ms]", "[%]", "[cdf%]", "[mem KB]", "[times called]"]
    sep = "\t" if tabs else "   "
    lines = ["===== Run Order =====", sep.join([*columns, "[Name]"])]
    for node_type, name, first, avg, pct, called in rows:
        cells = [node_type, f"{first:.3f}", f"{avg:.3f}", f"{pct:.3f}%", "100.000%", "0.000"]
        lines.append(sep.join([*cells, str(called), name]))
    lines += ["", "===== Top by Computation Time =====", "Number of nodes executed: 1"]
    out = parse_benchmark_output("\n".join(lines) + "\n", first_column="duration")
    assert [(r.node_type, r.name, r.first_ms, r.avg_ms, r.times_called) for r in out.ops] == [
        (t, n, f, a, c) for t, n, f, a, _, c in rows
    ]
