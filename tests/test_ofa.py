"""Once-for-All's MobileNetV3 space: OFA's own arch dict, costs written out by hand, runnable
exports in both runtimes."""

from __future__ import annotations

import json
import re

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import given
from hypothesis import strategies as st

from latlab.client import Client
from latlab.export.onnx import to_onnx
from latlab.graph import OpGraph
from latlab.onnx_summary import load_onnx
from latlab.opkey import graph_cost
from latlab.spaces import ArchError, get_space
from latlab.spaces.ofa import RESOLUTIONS, STAGE_RADIX, Ofa, make_divisible

SPACE = Ofa()
#: An arch as OFA's samplers and HELP's data write it: the blocks a stage does not use are there
#: too (stage 1 uses 2 of its 4: the 7 and 6 after them do not matter).
PUBLISHED = {
    "wid": None,
    "ks": [3, 5, 7, 3, 5, 5, 7, 7, 3, 3, 3, 5, 7, 7, 5, 3, 5, 3, 7, 7],
    "e": [4, 6, 3, 3, 6, 4, 6, 6, 3, 4, 6, 4, 6, 6, 3, 4, 4, 3, 6, 3],
    "d": [3, 2, 4, 2, 3],
    "r": [176],
}
CANONICAL = "r176:k3e4-k5e6-k7e3/k5e6-k5e4/k3e3-k3e4-k3e6-k5e4/k7e6-k7e6/k5e4-k3e3-k7e6"


def test_the_published_dict_in_every_form_names_the_same_arch() -> None:
    arch = SPACE.parse(json.dumps(PUBLISHED))
    assert arch.string == CANONICAL
    assert SPACE.parse(str(PUBLISHED)) == arch  # as Python prints it: None, single quotes
    assert SPACE.parse(json.dumps({**PUBLISHED, "r": 176})) == arch
    assert SPACE.parse(CANONICAL) == SPACE.parse(str(arch.index)) == arch
    assert SPACE.parse(",".join(map(str, arch.vector))) == arch  # a LatBench-style key
    again = arch.published()
    assert (
        SPACE.from_published(again) == arch and again["r"] == 176 and again["d"] == [3, 2, 4, 2, 3]
    )
    assert get_space("ofa").parse(CANONICAL) == arch


def test_the_size_counts_each_stage_s_depth_and_used_blocks() -> None:
    assert STAGE_RADIX == 9**2 + 9**3 + 9**4
    assert Ofa.size == 25 * STAGE_RADIX**5 and len(RESOLUTIONS) == 25
    assert 10**19 < Ofa.size // 25 < 10**20  # "about 10^19" before the resolution


@given(st.integers(min_value=0, max_value=Ofa.size - 1))
def test_any_index_round_trips_through_the_string_and_the_dict(index: int) -> None:
    arch = SPACE.from_index(index)
    assert arch.index == index
    assert SPACE.parse(arch.string) == arch
    assert SPACE.parse(json.dumps(arch.published())) == arch
    assert SPACE.parse(str(arch.vector)) == arch


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "{}",
        json.dumps({**PUBLISHED, "r": 225}),
        json.dumps({**PUBLISHED, "d": [3, 2, 5, 2, 3]}),
        json.dumps({**PUBLISHED, "ks": PUBLISHED["ks"][:19]}),  # type: ignore[index]
        json.dumps({**PUBLISHED, "e": [True] * 20}),
        json.dumps([1, 2, 3]),
        "{'ks': [3] * 20}",
        "r176:k3e4-k5e6",
        "r176:k3e4/k5e6-k5e4/k3e3-k3e4/k7e6-k7e6/k5e4-k3e3",  # a stage of one block
        CANONICAL.replace("k7e3", "k9e3"),
        str(Ofa.size),
        "²",
        ",".join(["176"] + ["2"] * 45),  # a used block of kernel 2
        "1,2,3",
    ],
)
def test_a_malformed_arch_is_an_arch_error(bad: str) -> None:
    with pytest.raises(ArchError):
        SPACE.parse(bad)


@given(st.text(max_size=200))
def test_any_text_is_an_arch_or_an_arch_error(text: str) -> None:
    try:
        arch = SPACE.parse(text)
    except ArchError:
        return
    assert SPACE.parse(arch.string) == arch


def test_macs_match_a_count_written_out_by_hand() -> None:
    """Every stage 2 blocks of k3e3 at 128: stem, the fixed block, 10 blocks (SE in stages 2, 4
    and 5), the 960 expansion and the 1280 mix."""
    arch = SPACE.parse("r128:" + "/".join(["k3e3-k3e3"] * 5))
    h = 128 // 2
    total = h * h * 16 * 27 + h * h * 16 * 9 + h * h * 16 * 16  # stem, first dw + project
    c = 16
    for c_out, stride, se in ((24, 2, False), (40, 2, True), (80, 2, False), (112, 1, True),
                              (160, 2, True)):  # fmt: skip
        for i in range(2):
            s = stride if i == 0 else 1
            mid = make_divisible(c * 3)
            total += h * h * mid * c + (h // s) ** 2 * mid * 9
            h //= s
            if se:
                total += 2 * mid * make_divisible(mid // 4)
            total += h * h * c_out * mid
            c = c_out
    total += h * h * 960 * 160 + 960 * 1280 + 1280 * 1000
    assert graph_cost(SPACE.graph(arch)).macs == total


def test_a_stage_uses_only_its_depth_and_se_where_the_stage_has_it() -> None:
    arch = SPACE.parse(json.dumps(PUBLISHED))
    graph = SPACE.graph(arch)
    blocks = {
        ".".join(n.name.split(".")[:2]) for n in graph.nodes if re.match(r"s\d\.b\d\.", n.name)
    }
    assert len(blocks) == sum(PUBLISHED["d"])  # type: ignore[arg-type]
    se = {n.name.split(".se.")[0] for n in graph.nodes if ".se." in n.name}
    assert se == {f"s{s}.b{i}" for s in (1, 3, 4) for i in range(PUBLISHED["d"][s])}  # type: ignore[index]
    assert graph.spec("input").shape == (1, 3, 176, 176)


@pytest.mark.parametrize("seed", [0, 1])
def test_sampled_archs_export_run_and_round_trip(seed: int) -> None:
    [arch] = SPACE.sample(1, seed)
    graph = SPACE.graph(arch)
    model = to_onnx(graph, seed=seed)
    assert OpGraph.from_onnx(load_onnx(model.SerializeToString())) == graph
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.zeros((1, 3, arch.resolution, arch.resolution), np.float32)
    [logits] = sess.run(None, {"input": x})
    assert logits.shape == (1, 1000)


def test_a_csv_of_published_dicts_imports_with_the_canonical_arch(client: Client) -> None:
    archs = SPACE.sample(5, seed=7)
    lines = ["space,arch,device,latency_ms"] + [
        f'ofa,"{a.published()}",help-note10,{10.0 + i}' for i, a in enumerate(archs)
    ]
    dataset = client.import_dataset([("note10.csv", "\n".join(lines).encode())], "help-ofa")
    rows = client.dataset_rows(dataset.id)
    assert [r["arch"] for r in rows] == [a.string for a in archs]
    assert [float(r["latency_ms"]) for r in rows] == [10.0, 11.0, 12.0, 13.0, 14.0]
