"""NAS-Bench-201: encodings both ways for every index, the network's costs, runnable exports."""

from __future__ import annotations

import csv

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import given
from hypothesis import strategies as st

from latlab.export.onnx import to_onnx
from latlab.graph import OpGraph
from latlab.onnx_summary import load_onnx, summarize_onnx
from latlab.opkey import graph_cost
from latlab.spaces import ArchError, GraphForm, UnknownSpace, get_space
from latlab.spaces.nb201 import OPS, SIZE, Nb201
from tests.factories import shared_path

SPACE = Nb201()
ALL_3X3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def test_every_index_round_trips_through_string_and_vector() -> None:
    seen = set()
    for index in range(SIZE):
        arch = SPACE.from_index(index)
        assert SPACE.from_string(arch.string) == arch
        assert SPACE.from_vector(arch.vector) == arch
        assert arch.index == index
        seen.add(arch.string)
    assert len(seen) == SIZE == 15_625


@pytest.mark.parametrize(
    ("index", "string"),
    [
        # the three cells NAS-Bench-201's generation script asserts after its shuffle
        (
            0,
            "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
        ),
        (9, "|avg_pool_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"),
        (
            123,
            "|avg_pool_3x3~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|",
        ),
    ],
)
def test_the_index_is_the_benchmarks_own(index: int, string: str) -> None:
    assert SPACE.from_index(index).string == string
    assert SPACE.from_string(string).index == index
    assert SPACE.parse(str(index)).string == string


def test_every_index_matches_the_benchmarks_table() -> None:
    """All 15,625 (index, cell) pairs of NAS-Bench-201's own table (shared/data/nb201)."""
    with shared_path("data/nb201/nb201_accuracy.csv").open() as f:
        table = {int(row["index"]): row["arch"] for row in csv.DictReader(f)}
    assert len(table) == SIZE
    assert all(SPACE.from_index(i).string == arch for i, arch in table.items())


def test_the_enum_index_is_the_unshuffled_enumeration() -> None:
    assert SPACE.from_enum_index(0).string == "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    assert SPACE.from_enum_index(1).vector == (0, 0, 0, 0, 0, 1)  # the last edge varies fastest
    assert SPACE.from_enum_index(5**5).vector == (1, 0, 0, 0, 0, 0)
    assert SPACE.from_enum_index(SIZE - 1).vector == (4,) * 6
    arch = SPACE.from_string(ALL_3X3)
    assert SPACE.from_enum_index(arch.enum_index) == arch
    assert [a.index for a in SPACE.all()] == list(range(SIZE))


def test_341_cells_have_an_output_cut_off_from_the_input() -> None:
    # LatBench leaves out exactly these (shared/data/latbench/README.md)
    assert sum(not a.connected for a in SPACE.all()) == 341


def test_isomorphic_cells_share_a_unique_key() -> None:
    a = SPACE.from_string("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|nor_conv_1x1~1|none~2|")
    b = SPACE.from_string(
        "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|nor_conv_1x1~1|avg_pool_3x3~2|"
    )
    # node 2 has no input in both, so the pool on 3<-2 is dead: same function
    assert a.unique_key == b.unique_key and a.index != b.index
    assert SPACE.from_string(ALL_3X3).unique_key != a.unique_key
    n_unique = len({arch.unique_key for arch in SPACE.all()})
    assert 1 < n_unique < SIZE


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "|nor_conv_3x3~0|",
        "|conv_9x9~0|+|none~0|none~1|+|none~0|none~1|none~2|",
        "1,2,3",
        "0,0,0,0,0,5",
        "15625",
        "-1",
        "hello",
        "²",  # a digit to str.isdigit, not to int
        "0,0,0,0,0,²",
    ],
)
def test_a_malformed_arch_is_an_arch_error(bad: str) -> None:
    with pytest.raises(ArchError):
        SPACE.parse(bad)


def test_parse_accepts_index_string_and_vector() -> None:
    arch = SPACE.from_string(ALL_3X3)
    assert (
        SPACE.parse(str(arch.index)) == SPACE.parse(ALL_3X3) == SPACE.parse("3,3,3,3,3,3") == arch
    )
    assert SPACE.parse(arch.index) == arch


def test_an_unknown_space_is_refused() -> None:
    with pytest.raises(UnknownSpace, match="nb201"):
        get_space("nasbench101")


def test_the_largest_cell_has_the_benchmarks_published_params_and_flops() -> None:
    # NAS-Bench-201 reports 1.531546 M parameters and 220.11 M "FLOPs" (multiply-accumulates)
    # for the all-3x3 cell on CIFAR-10.
    cost = graph_cost(SPACE.graph(SPACE.from_string(ALL_3X3)))
    assert cost.params == 1_531_546
    assert cost.macs == pytest.approx(220.11e6, rel=1e-4)


def expected_macs(cell_convs: int, k: int) -> int:
    """Written out independently: every cell conv is C x C x k x k at the stage resolution."""
    stem = 32 * 32 * 16 * 3 * 3 * 3
    cells = sum(cell_convs * 5 * (h * h) * c * c * k * k for h, c in ((32, 16), (16, 32), (8, 64)))
    reductions = sum(
        (h * h * c * c_in * 9) + (h * h * c * c * 9) + (h * h * c * c_in)
        for h, c, c_in in ((16, 32, 16), (8, 64, 32))
    )
    return stem + cells + reductions + 64 * 10


@pytest.mark.parametrize(
    ("arch", "convs", "k"),
    [
        (ALL_3X3, 6, 3),
        (
            "|nor_conv_1x1~0|+|nor_conv_1x1~0|nor_conv_1x1~1|+|nor_conv_1x1~0|nor_conv_1x1~1|nor_conv_1x1~2|",
            6,
            1,
        ),
        ("|skip_connect~0|+|none~0|avg_pool_3x3~1|+|none~0|none~1|nor_conv_3x3~2|", 1, 3),
        ("|avg_pool_3x3~0|+|skip_connect~0|none~1|+|skip_connect~0|none~1|skip_connect~2|", 0, 3),
    ],
)
def test_macs_match_a_count_written_out_by_hand(arch: str, convs: int, k: int) -> None:
    graph = SPACE.graph(SPACE.from_string(arch))
    assert graph_cost(graph).macs == expected_macs(convs, k)
    summary = summarize_onnx(load_onnx(to_onnx(graph).SerializeToString()))
    assert summary.macs == expected_macs(convs, k)  # the upload summary agrees


@given(st.integers(min_value=0, max_value=SIZE - 1))
def test_the_graph_of_an_exported_onnx_equals_the_graph_it_came_from(index: int) -> None:
    graph = SPACE.graph(SPACE.from_index(index))
    again = OpGraph.from_onnx(load_onnx(to_onnx(graph, seed=index).SerializeToString()))
    assert again == graph


@pytest.mark.parametrize(
    "index", [0, 1, 11791, 4016, 15624] + [a.index for a in SPACE.sample(5, seed=7)]
)
def test_exported_archs_run_in_onnxruntime(index: int) -> None:
    model = to_onnx(SPACE.graph(SPACE.from_index(index)))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    [logits] = sess.run(None, {"input": x})
    assert logits.shape == (1, 10) and np.all(np.isfinite(logits))


def test_dead_ops_are_not_exported() -> None:
    # node 2 is fed by nothing, so the conv on 3<-2 never affects the output
    arch = SPACE.from_string(
        "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"
    )
    graph = SPACE.graph(arch)
    assert not any(".e32." in n.name for n in graph.nodes)
    assert sum(".e10." in n.name and n.op_type == "Conv" for n in graph.nodes) == 15


def test_samples_are_distinct_connected_and_seeded() -> None:
    a, b = SPACE.sample(50, seed=3), SPACE.sample(50, seed=3)
    assert a == b and len(set(a)) == 50 and all(x.connected for x in a)
    assert SPACE.sample(50, seed=4) != a
    assert len(OPS) == 5


def test_the_eager_form_computes_every_edge() -> None:
    # node 2 is fed only by none edges: pruned, the conv on 3<-2 is dead and left out
    arch = SPACE.from_string(
        "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"
    )
    eager = SPACE.graph(arch, GraphForm.eager)
    per_cell = {
        edge: sum(f".{edge}." in n.name and n.op_type in ("Conv", "Mul") for n in eager.nodes)
        for edge in ("e10", "e20", "e21", "e30", "e31", "e32")
    }
    assert per_cell == {"e10": 15, "e20": 15, "e21": 15, "e30": 0, "e31": 15, "e32": 15}
    assert sum(n.op_type == "Mul" for n in eager.nodes) == 2 * 15  # none as x * 0
    assert graph_cost(eager).macs > graph_cost(SPACE.graph(arch)).macs


def test_both_forms_are_one_graph_where_nothing_is_dead() -> None:
    arch = SPACE.from_string(ALL_3X3)
    assert SPACE.graph(arch, GraphForm.eager).nodes == SPACE.graph(arch).nodes


@pytest.mark.parametrize("index", [0, 9, 123, 4016])
def test_eager_exports_run_in_onnxruntime(index: int) -> None:
    model = to_onnx(SPACE.graph(SPACE.from_index(index), GraphForm.eager))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    [logits] = sess.run(None, {"input": x})
    assert logits.shape == (1, 10) and np.all(np.isfinite(logits))
