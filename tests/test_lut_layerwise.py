"""The layer-wise spaces at search scale: a LUT answers their archs from its segments' sums
(latlab.lut.layerwise) and the GCN from pieces run sparse (latlab.predictors.layerwise), without
their graphs, and both give what the graph path gives, arch by arch."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from latlab.client import Client
from latlab.latency_model import to_artifact
from latlab.lut.errors import LutError
from latlab.lut.fusion import fuse
from latlab.lut.layerwise import SegmentTable
from latlab.lut.model import LutModel
from latlab.lut.table import Calibration, LookupTable, LutEntry, TypeFit
from latlab.runtimes import rules_for
from latlab.schemas import LutSource
from latlab.spaces import get_space
from latlab.spaces.base import ArchError

#: (space, parameters, rules): the three layer-wise spaces, under both runtimes' fusion rules.
CASES = [
    ("proxyless", {"resolution": 96}, "onnxruntime"),
    ("fbnet", {}, "onnxruntime"),
    ("fbnet", {}, "tflite"),
    ("ofa", {}, "onnxruntime"),
]


def synthetic_table(space_name: str, params: dict[str, int], rules: str) -> LookupTable:
    """Entries for the kernels of the space's covering archs, a latency from each one's FLOPs
    and bytes; every seventh key left out, so the fallback estimates some kernels."""
    space = get_space(space_name, **params)
    entries: dict[str, LutEntry] = {}
    for arch in space.covering()[:: 9 if space_name == "ofa" else 1]:
        for kernel in fuse(space.graph(arch), rules_for(rules)):
            if kernel.costs_time and kernel.key not in entries:
                us = 2.0 + kernel.cost.flops / 2e3 + kernel.cost.bytes_moved / 5e3
                entries[kernel.key] = LutEntry(
                    kernel.key, kernel.op_type, us, 0.1, 5, kernel.cost.flops,
                    kernel.cost.bytes_moved,
                )  # fmt: skip
    kept = {k: e for i, (k, e) in enumerate(sorted(entries.items())) if i % 7}
    fallback = {e.op_type: TypeFit(e.op_type, 1.5, 0.4, 0.3, 3) for e in entries.values()}
    return LookupTable(
        rules, LutSource.micro_models, kept, Calibration(1.07, 0.8, 0.05, 10), fallback
    )


@pytest.mark.parametrize(("space_name", "params", "rules"), CASES)
def test_the_segment_sums_answer_as_the_graphs_do(
    space_name: str, params: dict[str, int], rules: str
) -> None:
    model = LutModel(synthetic_table(space_name, params, rules))
    space = get_space(space_name, **params)
    archs = space.sample(40, seed=5) + space.covering()[:2]

    fast = model.predict_archs(space_name, params, archs)
    slow = model.predict_graphs([space.graph(a) for a in archs])

    assert fast.latency_ms.tolist() == pytest.approx(slow.latency_ms.tolist(), rel=1e-12)
    assert fast.kernels == slow.kernels
    assert fast.estimated is not None and slow.estimated is not None
    assert any(fast.estimated)  # the fallback took part
    for ours, theirs in zip(fast.estimated, slow.estimated, strict=True):
        assert sorted(e.key for e in ours) == sorted(e.key for e in theirs)
        assert sum(e.latency_us for e in ours) == pytest.approx(sum(e.latency_us for e in theirs))
    assert model._segments[(space_name, repr(sorted(params.items())))] is not None


@pytest.mark.parametrize("space_name", ["proxyless", "fbnet", "ofa"])
def test_canonical_strings_are_read_in_bulk_as_their_segments(space_name: str) -> None:
    """segment_numbers: a canonical string's row is the numbers of its parsed arch's segments;
    every other form (an index, the published list or dict, stray spaces) is left to parse."""
    space = get_space(space_name)
    keys = space.segment_keys()
    assert len(set(keys)) == len(keys)
    archs = space.sample(200, seed=11) + space.covering()
    canonical = [space.encode(a) for a in archs]
    others: list[str | int] = [archs[0].index, f" {canonical[1]}", canonical[2] + "-", "r224"]
    others.append(str(archs[3].published()) if space_name == "ofa" else str(archs[3].vector))
    numbers, read = space.segment_numbers([*canonical, *others])
    assert read.tolist() == [True] * len(canonical) + [False] * len(others)
    assert (numbers[len(canonical) :] == -1).all()
    for arch, row in zip(archs, numbers, strict=False):
        assert tuple(keys[n] for n in row if n >= 0) == space.segments(arch)
    if space_name == "proxyless":  # a stage's first block skipped: not an arch, not read
        bad = canonical[0].split("-")
        bad[0] = "skip"
        assert not space.segment_numbers(["-".join(bad)])[1].any()


@pytest.mark.parametrize("space_name", ["proxyless", "fbnet", "ofa"])
def test_a_batch_as_a_request_gives_it_is_answered_as_its_parsed_archs(space_name: str) -> None:
    model = LutModel(synthetic_table(space_name, {}, "onnxruntime"))
    space = get_space(space_name)
    archs = space.sample(60, seed=2)
    items: list[str | int] = [space.encode(a) for a in archs]
    items[::7] = [a.index for a in archs[::7]]  # another form: parsed one by one
    bulk = model.predict_items(space_name, {}, items)
    one_by_one = model.predict_archs(space_name, {}, archs)
    assert bulk.latency_ms.tolist() == one_by_one.latency_ms.tolist()  # the same floats
    assert bulk.kernels == one_by_one.kernels and bulk.estimated == one_by_one.estimated
    assert any(bulk.estimated or [])
    with pytest.raises(ArchError):
        model.predict_items(space_name, {}, [*items[:3], "not-an-arch"])


def test_a_search_batch_without_detail_gets_the_same_latency_and_no_kernel_lists(
    client: Client,
) -> None:
    """``detail=false``: what a search job asks for; the LUT's estimated kernels stay out."""
    space = get_space("fbnet")
    archs = [space.encode(a) for a in space.sample(20, seed=3)]
    csv = "space,arch,device,latency_ms\n" + "".join(f"fbnet,{a},d,1.0\n" for a in archs)
    [device_id] = client.import_dataset([("d.csv", csv.encode())], "d").device_ids
    model = LutModel(synthetic_table("fbnet", {}, "onnxruntime"))
    client.upload_predictor(to_artifact(model), device_id=device_id, runtime="x", space="fbnet")
    full = client.predict(device_id, space="fbnet", archs=archs)
    bare = client.predict(device_id, space="fbnet", archs=archs, detail=False)
    assert [p.latency_ms for p in bare.predictions] == [p.latency_ms for p in full.predictions]
    assert any(p.estimated for p in full.predictions) and all(p.kernels for p in full.predictions)
    assert all(p.kernels is None and not p.estimated for p in bare.predictions)


def test_a_kernel_across_two_segments_is_refused() -> None:
    """A rule fusing a block's last op into the next block's first: the premise is gone."""
    space = get_space("fbnet")
    table = synthetic_table("fbnet", {}, "onnxruntime")
    rules = rules_for("onnxruntime")

    class Spanning:  # FBNet, but every conv of layer 3 counted as layer 4's
        def __getattr__(self, name: str) -> object:
            return getattr(space, name)

        def segment_of(self, arch: object, node: str) -> object:
            slot = space.segment_of(arch, node)  # type: ignore[arg-type]
            return 4 if slot == 3 and node.endswith(".pw") else slot

    assert rules is not None
    with pytest.raises(LutError, match="spans segments"):
        SegmentTable.build(table, Spanning())  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the GCN


@pytest.mark.parametrize("space_name", ["proxyless", "fbnet", "ofa"])
def test_the_gcn_from_pieces_answers_as_it_does_from_graphs(space_name: str) -> None:
    """predictors.layerwise: the same features (rows, adjacency, costs, one-hot) assembled
    from pieces, the same outputs from the sparse pass, ensemble spread and floor included."""
    from latlab.predictors.features import arch_features, batch
    from latlab.predictors.forward import gcn_forward
    from latlab.predictors.layerwise import layerwise_pieces, sparse_batch, sparse_forward
    from latlab.predictors.linear import LinearModel
    from tests.test_predictors import random_predictor

    space = get_space(space_name)
    pieces = layerwise_pieces(space_name, {})
    assert pieces is not None
    archs = space.sample(70, seed=11)  # more than one sparse chunk
    feats = arch_features(space_name, {}, archs)
    found = [pieces.features(a) for a in archs]
    assert all(f is not None for f in found)
    assembled = [f for f in found if f is not None]
    for (_, linear), f in zip(assembled, feats, strict=True):
        assert linear.cost_pruned == pytest.approx(f.cost_pruned, rel=1e-12)
        assert np.array_equal(linear.onehot, f.onehot)

    predictor = random_predictor(members=2)
    weights = predictor.members[0].weights
    sparse = sparse_forward(
        weights, predictor.config.layers, sparse_batch([f[0] for f in assembled])
    )
    dense = gcn_forward(weights, predictor.config.layers, batch(feats))
    np.testing.assert_allclose(sparse, dense, rtol=1e-5, atol=1e-5)

    floor = LinearModel.fit(feats[:40], np.linspace(1.0, 2.0, 40), "cost")
    blended = replace(predictor, floor=floor, gcn_weight=0.7)
    fast = blended.predict_archs(space_name, {}, archs)
    mean, spread = blended.predict(feats)
    np.testing.assert_allclose(fast.latency_ms, mean, rtol=1e-5)
    assert fast.uncertainty_ms is not None and spread is not None
    np.testing.assert_allclose(fast.uncertainty_ms, spread, rtol=1e-4, atol=1e-7)
