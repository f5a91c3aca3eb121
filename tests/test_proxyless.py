"""The MobileNetV2/ProxylessNAS layer-wise space: encodings, costs, runnable exports."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import given
from hypothesis import strategies as st

from latlab.export.onnx import to_onnx
from latlab.graph import OpGraph
from latlab.onnx_summary import load_onnx
from latlab.opkey import graph_cost
from latlab.spaces import ArchError, SpaceParamError, get_space
from latlab.spaces.proxyless import RADIX, Proxyless

SPACE = Proxyless(resolution=64)


@given(st.integers(min_value=0, max_value=Proxyless.size - 1))
def test_any_index_round_trips_through_the_string(index: int) -> None:
    arch = SPACE.from_index(index)
    assert arch.index == index
    assert SPACE.from_string(arch.string) == arch
    assert SPACE.parse(str(index)) == arch


def test_the_size_counts_skips_only_where_allowed() -> None:
    assert len(RADIX) == 21
    assert Proxyless.size == 9**6 * 10**15


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "k3e6",
        "-".join(["k9e6"] * 21),
        "-".join(["skip"] + ["k3e6"] * 20),
        str(Proxyless.size),
        "²",  # a digit to str.isdigit, not to int
    ],
)
def test_a_malformed_arch_is_an_arch_error(bad: str) -> None:
    with pytest.raises(ArchError):
        SPACE.parse(bad)


def mbconv_macs(h: int, c_in: int, c_out: int, k: int, e: int, stride: int) -> int:
    mid = c_in * e
    out = h // stride
    return (h * h * mid * c_in if e != 1 else 0) + out * out * mid * k * k + out * out * c_out * mid


def test_macs_match_a_count_written_out_by_hand() -> None:
    arch = SPACE.from_string("-".join(["k3e6"] * 21))
    h, c, total = 224 // 2, 32, 224 // 2 * 224 // 2 * 32 * 27
    total += mbconv_macs(h, 32, 16, 3, 1, 1)
    c = 16
    for c_out, n, stride in (
        (24, 4, 2),
        (40, 4, 2),
        (80, 4, 2),
        (96, 4, 1),
        (192, 4, 2),
        (320, 1, 1),
    ):
        for i in range(n):
            s = stride if i == 0 else 1
            total += mbconv_macs(h, c, c_out, 3, 6, s)
            h, c = h // s, c_out
    total += h * h * 1280 * 320 + 1280 * 1000
    assert graph_cost(Proxyless().graph(arch)).macs == total


def test_skipped_blocks_are_not_in_the_graph() -> None:
    arch = SPACE.from_string("-".join(["k5e3", "skip", "skip", "skip"] * 5 + ["k7e4"]))
    graph = SPACE.graph(arch)
    assert sum(n.op_type == "Conv" and n.attr("group") > 1 for n in graph.nodes) == 1 + 5 + 1
    assert not any(n.name.startswith("s0.b1.") for n in graph.nodes)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sampled_archs_export_run_and_round_trip(seed: int) -> None:
    [arch] = SPACE.sample(1, seed)
    graph = SPACE.graph(arch)
    model = to_onnx(graph, seed=seed)
    assert OpGraph.from_onnx(load_onnx(model.SerializeToString())) == graph
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    [logits] = sess.run(None, {"input": np.zeros((1, 3, 64, 64), np.float32)})
    assert logits.shape == (1, 1000)


def test_the_resolution_is_a_parameter_of_the_space() -> None:
    space = get_space("proxyless", resolution=96)
    graph = space.graph(space.example())
    assert graph.spec("input").shape == (1, 3, 96, 96)
    with pytest.raises(SpaceParamError, match="a multiple of 32"):
        Proxyless(resolution=100)
