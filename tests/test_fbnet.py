"""The FBNet layer-wise space (HW-NAS-Bench / HELP's CIFAR-100 network): the published
encodings, costs written out by hand, runnable exports."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import given
from hypothesis import strategies as st

from latlab.client import Client
from latlab.export.onnx import to_onnx
from latlab.graph import OpGraph
from latlab.metrics import spearman
from latlab.onnx_summary import load_onnx
from latlab.opkey import graph_cost
from latlab.predictors.pipeline import train_for_device
from latlab.predictors.presets import PRESETS
from latlab.spaces import ArchError, get_space
from latlab.spaces.fbnet import LAYERS, OPS, Fbnet, FbnetArch

SPACE = Fbnet()
#: An arch as HELP and HW-NAS-Bench write it: op indices into OPS, one per layer.
PUBLISHED = [3, 7, 0, 8, 8, 6, 2, 1, 8, 5, 7, 4, 3, 8, 6, 6, 0, 2, 8, 7, 5, 3]


def test_the_op_order_and_size_are_the_published_ones() -> None:
    assert OPS == (
        "k3_e1", "k3_e1_g2", "k3_e3", "k3_e6", "k5_e1", "k5_e1_g2", "k5_e3", "k5_e6", "skip",
    )  # fmt: skip
    assert LAYERS == 22 and Fbnet.size == 9**22


def test_every_published_form_names_the_same_arch() -> None:
    arch = SPACE.from_ops(PUBLISHED)
    names = [OPS[i] for i in PUBLISHED]
    forms = [
        json.dumps(PUBLISHED),  # op indices, as JSON
        str(PUBLISHED),  # as Python prints the list
        json.dumps(names),  # op names
        str(names),  # ['k3_e6', 'k5_e6', ...]
        ",".join(map(str, PUBLISHED)),  # a LatBench-style pickle's key, comma-joined
        "-".join(names),  # the canonical string
        str(arch.index),
    ]
    assert {SPACE.parse(f) for f in forms} == {arch}
    assert arch.names == names and list(arch.vector) == PUBLISHED
    assert SPACE.encode(arch) == "-".join(names)
    assert get_space("fbnet").parse(SPACE.encode(arch)) == arch


@given(st.integers(min_value=0, max_value=Fbnet.size - 1))
def test_any_index_round_trips_through_the_string_and_the_list(index: int) -> None:
    arch = SPACE.from_index(index)
    assert arch.index == index
    assert SPACE.parse(arch.string) == arch
    assert SPACE.parse(json.dumps(list(arch.ops))) == arch
    assert SPACE.encoding(arch).reshape(LAYERS, len(OPS)).argmax(axis=1).tolist() == list(arch.ops)


@given(
    st.one_of(
        st.text(max_size=300),
        st.lists(st.one_of(st.integers(-2, 10), st.sampled_from(OPS)), max_size=25).map(str),
    )
)
def test_any_text_is_an_arch_or_an_arch_error(text: str) -> None:
    try:
        arch = SPACE.parse(text)
    except ArchError:
        return
    assert SPACE.parse(arch.string) == arch and len(arch.ops) == LAYERS


@pytest.mark.parametrize(
    "bad",
    [
        "",
        json.dumps(PUBLISHED[:21]),
        json.dumps([*PUBLISHED[:21], 9]),
        json.dumps([*PUBLISHED[:21], True]),
        json.dumps([*PUBLISHED[:21], "k7_e6"]),
        "²",  # a digit to str.isdigit, not to int
        ",".join(["1"] * 21 + ["²"]),
        "[3, 7, 0",
        '{"ops": [1]}',
        "-".join(["k3_e6"] * 21),
        str(Fbnet.size),
    ],
)
def test_a_malformed_arch_is_an_arch_error(bad: str) -> None:
    with pytest.raises(ArchError):
        SPACE.parse(bad)


def block_macs(h: int, c_in: int, c_out: int, k: int, e: int, g: int, stride: int) -> int:
    mid, out = c_in * e, h // stride
    return h * h * mid * c_in // g + out * out * mid * k * k + out * out * c_out * mid // g


def test_macs_match_a_count_written_out_by_hand() -> None:
    """Every layer k5_e1_g2 but skips where a stage begins (a 1x1 conv there)."""
    ops = [OPS.index("k5_e1_g2")] * LAYERS
    starts = [0, 1, 5, 9, 13, 17, 21]
    for layer in starts[1:]:
        ops[layer] = OPS.index("skip")
    arch = SPACE.from_ops(ops)
    h, c, total = 32, 16, 32 * 32 * 16 * 27
    layer = 0
    for c_out, n, stride in ((16, 1, 1), (24, 4, 1), (32, 4, 2), (64, 4, 2), (112, 4, 1),
                             (184, 4, 2), (352, 1, 1)):  # fmt: skip
        for i in range(n):
            s = stride if i == 0 else 1
            if layer in starts[1:]:
                total += (h // s) ** 2 * c_out * c
            else:
                total += block_macs(h, c, c_out, 5, 1, 2, s)
            h, c, layer = h // s, c_out, layer + 1
    total += h * h * 1504 * 352 + 1504 * 100
    assert graph_cost(SPACE.graph(arch)).macs == total


def test_a_skip_where_shapes_allow_is_no_op_at_all() -> None:
    arch = SPACE.from_ops([8] * LAYERS)  # every layer skip: the stage starts are convs
    graph = SPACE.graph(arch)
    assert sum(n.name.endswith(".skip") for n in graph.nodes) == 6
    assert not any(n.name.startswith("s1.l1") for n in graph.nodes)


@pytest.mark.parametrize("seed", [0, 1])
def test_sampled_archs_export_run_and_round_trip(seed: int) -> None:
    [arch] = SPACE.sample(1, seed)
    graph = SPACE.graph(arch)
    model = to_onnx(graph, seed=seed)
    assert OpGraph.from_onnx(load_onnx(model.SerializeToString())) == graph
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    [logits] = sess.run(None, {"input": np.zeros((1, 3, 32, 32), np.float32)})
    assert logits.shape == (1, 100)
    grouped = [n for n in graph.nodes if n.op_type == "Conv" and n.attr("group") == 2]
    assert len(grouped) == 2 * sum(OPS[op].endswith("_g2") for op in arch.ops)


@pytest.mark.slow
def test_imported_published_latencies_train_a_predictor_that_serves_the_space(
    client: Client,
) -> None:
    """A device known only from a CSV in the published form (op-index lists), whose latency
    follows its MACs and the bytes it moves, with a little extra per grouped layer: the
    predictor trained on 60 of them ranks 40 it never saw (archs mixed up on the way, or read
    in another order, would not)."""
    archs = SPACE.sample(100, seed=3)

    def latency_ms(arch: FbnetArch) -> float:
        cost = graph_cost(SPACE.graph(arch))
        grouped = sum(OPS[op].endswith("_g2") for op in arch.ops)
        return 0.3 + 0.01 * cost.macs / 1e6 + 0.02 * cost.bytes_moved / 1e6 + 0.02 * grouped

    lines = ["space,arch,device,latency_ms"] + [
        f'fbnet,"{list(a.ops)}",help-pixel3,{latency_ms(a)!r}' for a in archs[:60]
    ]
    dataset = client.import_dataset([("pixel3.csv", "\n".join(lines).encode())], "help")
    [device_id] = dataset.device_ids
    rows = client.dataset_rows(dataset.id)
    assert [r["arch"] for r in rows] == [a.string for a in archs[:60]]  # the canonical form

    run = train_for_device(client, device_id, replace(PRESETS["latlab"], epochs=40))
    assert run.registered is not None and run.registered.space == "fbnet"
    unseen = archs[60:]
    out = client.predict(device_id, space="fbnet", archs=[str(list(a.ops)) for a in unseen])
    assert out.version == run.registered.id
    predicted = [p.latency_ms for p in out.predictions]
    assert spearman(predicted, [latency_ms(a) for a in unseen]) > 0.9
