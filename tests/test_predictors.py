"""The latency predictor: features that keep every op, the numpy forward pass against PyTorch,
training on real published latencies with the floor guard, the artifact, and the endpoint."""

from __future__ import annotations

import pickle
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from latlab.client import Client
from latlab.errors import ApiError
from latlab.latency_model import read_artifact, to_artifact
from latlab.opkey import graph_cost
from latlab.predictors.errors import PredictorError
from latlab.predictors.features import FEATURES, arch_features, batch, graph_features, node_flags
from latlab.predictors.forward import gcn_forward
from latlab.predictors.gcn import Gcn
from latlab.predictors.linear import LinearModel
from latlab.predictors.model import GcnConfig, GcnPredictor, Member, TargetScale
from latlab.predictors.train import fold_indices, train_predictor
from latlab.server.predict.cache import TABLE_MIN_REQUEST
from latlab.spaces import GraphForm
from latlab.spaces.nb201 import Nb201
from tests.factories import shared_path

SPACE = Nb201()
A53 = "data/latbench/mobile-cpu-snapdragon-450-cortex-a53-int8.pickle"
SMALL = GcnConfig(
    hidden=32, layers=2, epochs=30, lr=2e-3, target="log", dropout=0.0, folds=4, members=None
)
ALL_3X3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
#: node 2 is fed only by none edges, so the conv on 3<-2 is dead (left out of the pruned form)
DEAD_CONV = "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"
#: the same cell with nothing on 3<-2: isomorphic to DEAD_CONV once dead ops are pruned
NO_CONV = "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|nor_conv_1x1~1|none~2|"


def features(archs: list[str]) -> list:
    return arch_features("nb201", {}, archs)


def random_predictor(
    config: GcnConfig = SMALL, members: int = 1, every_op: bool = True
) -> GcnPredictor:  # every_op: the default exercises both halves of each layer
    """Untrained members. A new network reads the live ops alone (the weights of messages
    over every op's adjacency start at zero); ``every_op`` gives those weights random values,
    as a device whose data says dead ops cost time would."""
    out = []
    rng = np.random.default_rng(0)
    for k in range(members):
        torch.manual_seed(k)
        model = Gcn(FEATURES, config.hidden, config.layers, config.dropout)
        weights = {n: v.detach().numpy().copy() for n, v in model.state_dict().items()}
        for i in range(config.layers):
            w = weights[f"convs.{i}.weight"]
            assert not w[w.shape[0] // 2 :].any()
            if every_op:
                w[w.shape[0] // 2 :] = rng.normal(0, 0.3, w[w.shape[0] // 2 :].shape)
        out.append(Member(weights, None))
    return GcnPredictor(config, TargetScale("log", 0.0, 1.0), tuple(out), None, 1.0)


def published(n: int) -> tuple[list[str], np.ndarray]:
    table = pickle.loads(shared_path(A53).read_bytes())
    items = list(table.items())[:n]
    return [SPACE.from_vector(v).string for v, _ in items], np.array([s * 1e3 for _, s in items])


# --------------------------------------------------------------------------- features


def test_the_global_node_joins_every_node_and_the_adjacency_is_normalised() -> None:
    [f] = features([ALL_3X3])
    # six ReLU-Conv-BN edges, three Adds, the global node
    assert f.x.shape == (22, FEATURES) and f.x[0, 0] == 1.0
    assert np.all(f.adj[0] > 0) and np.allclose(f.adj, f.adj.T)
    degree = (f.adj > 0).sum(axis=1)
    assert np.allclose(f.adj[0, 0], 1 / degree[0])  # D^-1/2 (A + I) D^-1/2 on the diagonal
    assert np.allclose(f.adj, f.adj_live)  # nothing is dead
    assert np.all((f.x[1:, FEATURES - 12 :] >= 0) & (f.x[1:, FEATURES - 12 :] <= 1.5))


def test_every_op_is_kept_and_flagged_dead_or_live() -> None:
    graph = SPACE.predictor_graph(SPACE.parse(DEAD_CONV))
    found = node_flags(graph)
    flags = {
        n.name: (f, u, live)
        for n, f, u, live in zip(graph.nodes, found.fed, found.used, found.live, strict=True)
    }
    assert flags["cell.e32.conv"] == (False, True, False)  # computed on zeros, result used
    assert flags["cell.e20.zero"] == (False, True, False)  # x * 0 depends on nothing
    assert flags["cell.e10.conv"] == (True, True, True)
    assert flags["cell.e31.conv"] == (True, True, True)
    assert flags["cell.n2.add1"] == (False, True, False)  # 0 + 0
    assert flags["cell.n3.add2"] == (True, True, False)  # (x + conv) + dead: pruned, no op
    [dead, pruned_twin] = features([DEAD_CONV, NO_CONV])
    assert dead.nodes == pruned_twin.nodes + 2  # 3<-2: ReLU-Conv-BN, or x * 0
    assert dead.cost_full[0] > pruned_twin.cost_full[0]  # every op: the dead conv counts
    assert dead.cost_pruned == pytest.approx(pruned_twin.cost_pruned)  # live ops: the same
    live = dead.x[:, -1].astype(bool)
    live[0] = True
    # in the live adjacency a dead node talks to nobody but itself
    assert np.all(dead.adj_live[~live][:, live] == 0) and np.all(dead.adj[~live][:, 0] > 0)


def test_isomorphic_cells_get_the_same_prediction_only_from_a_model_that_reads_live_ops() -> None:
    """What the device's data decides: a model that puts no weight on every op's adjacency
    reads the pruned network (isomorphic cells alike), one that does tells them apart."""
    groups: dict[str, list[str]] = defaultdict(list)
    for i in range(0, SPACE.size, 7):
        arch = SPACE.from_index(i)
        if arch.connected:
            groups[arch.unique_key].append(arch.string)
    pairs = [(DEAD_CONV, NO_CONV), *[(g[0], g[1]) for g in groups.values() if len(g) >= 2][:7]]
    live_only = random_predictor(every_op=False)
    every_op = random_predictor(every_op=True)
    differ = 0
    for a, b in pairs:
        pa, pb = live_only.predict(features([a, b]))[0]
        assert pa == pytest.approx(pb, rel=1e-5), (a, b)
        qa, qb = every_op.predict(features([a, b]))[0]
        differ += not np.isclose(qa, qb, rtol=1e-4)
    assert differ >= len(pairs) // 2


def test_a_node_permutation_does_not_change_the_prediction() -> None:
    [f] = features(
        ["|nor_conv_1x1~0|+|avg_pool_3x3~0|nor_conv_3x3~1|+|skip_connect~0|none~1|avg_pool_3x3~2|"]
    )
    order = np.concatenate([[0], 1 + np.random.default_rng(0).permutation(f.nodes - 1)])
    permuted = replace(
        f,
        x=f.x[order],
        adj=f.adj[np.ix_(order, order)],
        adj_live=f.adj_live[np.ix_(order, order)],
    )
    predictor = random_predictor()
    assert predictor.predict([f])[0] == pytest.approx(predictor.predict([permuted])[0], rel=1e-5)


def test_a_whole_model_gets_features_too() -> None:
    graph = SPACE.graph(SPACE.parse(DEAD_CONV), GraphForm.eager)
    f = graph_features(graph)
    assert f.onehot.size == 0 and f.nodes == len(graph.nodes) + 1
    assert f.cost_full[0] > f.cost_pruned[0] > 0


# --------------------------------------------------------------------------- forward pass


def test_the_numpy_forward_pass_is_the_torch_model_batched_or_alone() -> None:
    config = GcnConfig(hidden=48, layers=3, dropout=0.3)
    torch.manual_seed(3)
    model = Gcn(FEATURES, config.hidden, config.layers, config.dropout).eval()
    with torch.no_grad():  # both halves of every layer at work, not the zero-initialised one
        for conv in model.convs:
            conv.weight.normal_(0.0, 0.2)
    feats = features(
        [a.string for a in SPACE.sample(9, seed=1)]
        + ["|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|", DEAD_CONV]
    )
    data = batch(feats)
    with torch.no_grad():
        expected = model(
            torch.from_numpy(data.x), torch.from_numpy(data.adj), torch.from_numpy(data.adj_live)
        ).numpy()
    weights = {n: v.detach().numpy() for n, v in model.state_dict().items()}
    assert np.allclose(gcn_forward(weights, config.layers, data), expected, rtol=1e-4, atol=1e-5)
    alone = [gcn_forward(weights, config.layers, batch([f]))[0] for f in feats]
    assert np.allclose(alone, expected, rtol=1e-4, atol=1e-5)  # padding changes nothing


# --------------------------------------------------------------------------- training and artifact


def test_training_on_real_published_latencies_beats_an_untrained_network() -> None:
    archs, latency = published(400)
    feats = features(archs)
    test = list(range(300, 400))
    gcn_only = replace(SMALL, baseline="none")
    _, untrained = train_predictor(feats, latency, replace(gcn_only, epochs=1, lr=1e-9), test=test)
    _trained, report = train_predictor(feats, latency, gcn_only, test=test)
    # the GCN candidate, scored on the folds its members did not see
    assert dict(report.candidates)["gcn"].mape < 0.5 * dict(untrained.candidates)["gcn"].mape
    assert report.test is not None and report.test.n == 100 and report.test.spearman > 0.8
    assert report.cv.n == 300 and len(report.epochs) == SMALL.folds
    assert len(report.predicted_ms) == len(report.true_ms) == 100


def test_the_floor_guard_serves_the_linear_floor_where_the_gcn_loses() -> None:
    """Latency exactly linear in the one-hot encoding: no network beats the floor on data it did
    not see, and the guard serves the floor, saying so."""
    archs = [a.string for a in SPACE.sample(120, seed=4)]
    feats = features(archs)
    per_op_ms = np.random.default_rng(0).uniform(0.1, 1.0, 30)
    latency = np.array([0.5 + f.onehot @ per_op_ms for f in feats])
    predictor, report = train_predictor(feats, latency, replace(SMALL, epochs=3), test=[])
    assert report.served.startswith("linear:") and predictor.served == report.served
    assert predictor.gcn_weight == 0.0 and predictor.members == ()
    assert report.candidates[0][0] == report.served
    assert report.cv.mape < 1e-6  # the floor is exact
    assert predictor.meta["served"] == report.served and "gcn" in predictor.meta["candidates"]
    assert predictor.predict(feats[:5])[0] == pytest.approx(latency[:5], rel=1e-6)


def test_the_guard_reports_every_candidate_and_serves_the_best_cross_validated_one() -> None:
    archs, latency = published(200)
    predictor, report = train_predictor(features(archs), latency, SMALL, test=[])
    names = [name for name, _ in report.candidates]
    assert {"gcn", "linear:full", "linear:onehot", "blend:0.5:full"} <= set(names)
    assert names[0] == report.served == predictor.served
    assert report.test is None and report.cv.n == 200  # every arch trained, scored by folds


def test_a_saved_predictor_reloads_and_predicts_the_same_numbers() -> None:
    archs, latency = published(60)
    feats = features(archs)
    floor = LinearModel.fit(feats, latency, "onehot")
    predictor = replace(
        random_predictor(members=3),
        floor=floor,
        gcn_weight=0.5,
        meta={"device_id": "d", "test": {"rmse_ms": 0.1}},
    )
    assert predictor.served == "blend:0.5:onehot"
    again = read_artifact(to_artifact(predictor))
    mean, std = predictor.predict(feats)
    mean2, std2 = again.predict(feats)
    assert np.array_equal(mean, mean2) and std is not None and np.array_equal(std, std2)
    assert again.config == predictor.config and again.meta == predictor.meta
    assert again.floor == floor and again.served == predictor.served


def test_a_corrupt_or_old_artifact_is_refused() -> None:
    with pytest.raises(PredictorError):
        GcnPredictor.from_payload(b"not an npz at all")
    with pytest.raises(PredictorError):
        GcnPredictor.from_payload(random_predictor().payload()[:200])
    with pytest.raises(PredictorError, match="needs one"):
        replace(random_predictor(), gcn_weight=0.5)  # a blend without a floor


def test_folds_cover_every_arch_once() -> None:
    with pytest.raises(PredictorError):
        fold_indices(3, 4, seed=0)
    folds = fold_indices(10, 3, seed=0)
    assert sorted(np.concatenate(folds).tolist()) == list(range(10))
    assert [len(f) for f in folds] == [4, 3, 3]


def test_too_few_archs_are_refused_with_the_minimum_named() -> None:
    archs, latency = published(3)
    with pytest.raises(PredictorError, match="at least 3"):
        train_predictor(features(archs[:2]), latency[:2], SMALL)
    # fewer archs than folds: one arch per fold, still a predictor (of little use)
    predictor, report = train_predictor(features(archs), latency, SMALL)
    assert report.cv.n == 3 and predictor.predict(features(archs))[0].shape == (3,)


# --------------------------------------------------------------------------- serving


def test_the_endpoint_serves_the_current_gcn_with_its_uncertainty(client: Client) -> None:
    archs, latency = published(40)
    csv = "space,arch,device,latency_ms\n" + "".join(
        f"nb201,{a},a53,{float(ms)!r}\n" for a, ms in zip(archs, latency, strict=True)
    )
    dataset = client.import_dataset([("a53.csv", csv.encode())], "a53")
    [device_id] = dataset.device_ids
    with pytest.raises(ApiError) as err:
        client.predict(device_id, space="nb201", archs=[1], predictor="gcn")
    assert err.value.status == 404 and "no current gcn" in err.value.message

    predictor = random_predictor(members=2)
    registered = client.upload_predictor(
        to_artifact(predictor), device_id=device_id, runtime="unknown", space="nb201"
    )
    assert registered.version == 1 and registered.current
    out = client.predict(device_id, space="nb201", archs=archs[:5])  # auto: the GCN
    expected, spread = predictor.predict(features(archs[:5]))
    assert out.predictor == "gcn" and out.version == registered.id
    assert [p.latency_ms for p in out.predictions] == pytest.approx(expected.tolist(), rel=1e-5)
    assert spread is not None
    assert [p.uncertainty_ms for p in out.predictions] == pytest.approx(spread.tolist(), rel=1e-4)
    # a search job's batch builds the table of all 15,625; the small request before it was
    # predicted as it was, and the table answers it with the same numbers
    batch = client.predict(device_id, space="nb201", archs=list(range(TABLE_MIN_REQUEST)))
    assert len(batch.predictions) == TABLE_MIN_REQUEST
    again = client.predict(device_id, space="nb201", archs=archs[:5])
    assert [p.latency_ms for p in again.predictions] == pytest.approx(
        [p.latency_ms for p in out.predictions], rel=1e-5
    )

    second = client.upload_predictor(
        to_artifact(random_predictor(members=1)),
        device_id=device_id,
        runtime="unknown",
        space="nb201",
    )
    assert second.version == 2 and not client.predictor(registered.id).current
    assert client.predict(device_id, space="nb201", archs=[3]).version == second.id
    assert (
        client.predict(device_id, space="nb201", archs=[3], version=registered.id).version
        == registered.id
    )

    for kwargs, status, message in [
        ({"space": "nb201", "archs": ["|nope~0|"]}, 422, "NAS-Bench-201"),
        ({"space": "proxyless", "archs": [0]}, 404, "no current gcn"),
        ({"space": "nb201", "archs": [1], "space_params": {"resolution": 64}}, 422, "reads archs"),
    ]:
        with pytest.raises(ApiError) as err:
            client.predict(
                device_id, predictor="gcn" if kwargs["space"] == "proxyless" else "auto", **kwargs
            )
        assert err.value.status == status and message in err.value.message, kwargs
    with pytest.raises(ApiError) as err:
        client.predict("nope", space="nb201", archs=[1])
    assert err.value.status == 404
    with pytest.raises(ApiError) as err:
        client.upload_predictor(b"garbage", device_id=device_id, runtime="unknown", space="nb201")
    assert err.value.status == 422 and "artifact" in err.value.message
    assert len(client.predictors(device_id)) == 2


def test_auto_serves_each_space_s_best_validated_version(client: Client) -> None:
    archs, _ = published(10)
    csv = "space,arch,device,latency_ms\n" + "".join(f"nb201,{a},d,1.0\n" for a in archs)
    [device_id] = client.import_dataset([("d.csv", csv.encode())], "d").device_ids

    def upload(space: str, mape: float | None, current: bool | None = None) -> str:
        predictor = random_predictor()
        if mape is not None:
            predictor = replace(predictor, meta={"cv": {"mape": mape, "n": 10}})
        return client.upload_predictor(
            to_artifact(predictor),
            device_id=device_id,
            runtime="unknown",
            space=space,
            current=current,
        ).id

    def serving(space: str, archs: list[str | int]) -> str:
        return client.predict(device_id, space=space, archs=archs).version

    first = upload("nb201", 0.10)  # the first of its space: current
    worse = upload("nb201", 0.20)
    assert client.predictor(first).current and not client.predictor(worse).current
    assert serving("nb201", archs[:2]) == first
    better = upload("nb201", 0.05)
    assert serving("nb201", archs[:2]) == better and not client.predictor(first).current
    kept_aside = upload("nb201", 0.01, current=False)  # the caller's word wins both ways
    forced = upload("nb201", 0.50, current=True)
    assert not client.predictor(kept_aside).current and serving("nb201", archs[:2]) == forced
    unscored = upload("nb201", None)  # not comparable: the newer one, as the registrant meant
    assert serving("nb201", archs[:2]) == unscored

    other_space = upload("proxyless", 0.90)  # another space: its own current version
    assert serving("proxyless", [0]) == other_space
    assert serving("nb201", archs[:2]) == unscored
    client.delete_predictor(unscored)  # its space's newest older version serves again
    assert serving("nb201", archs[:2]) == forced
    assert serving("proxyless", [0]) == other_space


def test_one_call_predicts_on_several_devices_each_by_its_own_predictor(
    client: Client,
) -> None:
    archs, _ = published(10)
    device_ids = []
    for name in ("phone", "board", "bare"):
        csv = "space,arch,device,latency_ms\n" + "".join(f"nb201,{a},{name},1.0\n" for a in archs)
        device_ids += client.import_dataset([(f"{name}.csv", csv.encode())], name).device_ids
    phone, board, bare = device_ids
    for device_id, members in ((phone, 1), (board, 2)):
        client.upload_predictor(
            to_artifact(random_predictor(members=members)),
            device_id=device_id,
            runtime="unknown",
            space="nb201",
        )

    answers = client.predict_devices([board, phone], space="nb201", archs=archs[:4])
    assert [a.device_id for a in answers] == [board, phone]
    for answer in answers:
        alone = client.predict(answer.device_id, space="nb201", archs=archs[:4])
        assert answer.version == alone.version
        assert [p.latency_ms for p in answer.predictions] == [
            p.latency_ms for p in alone.predictions
        ]
    assert answers[0].predictions[0].uncertainty_ms is not None  # the 2-member ensemble
    assert answers[1].predictions[0].uncertainty_ms is None

    for ids, status, message in [
        ([phone, bare], 404, bare),
        ([phone, "nope"], 404, "nope"),
        ([phone, phone], 422, "more than once"),
        ([phone] * 17, 413, "at most 16"),
    ]:
        with pytest.raises(ApiError) as err:
            client.predict_devices(ids, space="nb201", archs=[1])
        assert err.value.status == status and message in err.value.message, ids


def load_example() -> Any:
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "examples" / "latency_constrained_search.py"
    spec = importlib.util.spec_from_file_location("latency_constrained_search", path)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    return example


@pytest.mark.parametrize("space", ["nb201", "fbnet", "ofa", "proxyless"])
def test_the_example_search_mutates_one_choice_and_counts_parameters_without_graphs(
    space: str,
) -> None:
    example = load_example()
    search_space = example.SearchSpace(space)
    rng = np.random.default_rng(0)
    for arch in search_space.random(rng, 6):
        genes, radix = search_space.genes(arch)
        child = search_space.mutate(arch, rng)
        child_genes, _ = search_space.genes(child)
        assert child == search_space.space.parse(search_space.space.encode(child)) != arch
        if len(child_genes) == len(genes):  # (an OFA depth change adds or drops blocks)
            assert sum(a != b for a, b in zip(genes, child_genes, strict=True)) == 1
        assert all(0 <= g < r for g, r in zip(genes, radix, strict=True))
        params = graph_cost(search_space.space.graph(arch)).params
        assert search_space.objective(arch) == pytest.approx(params, rel=1e-9)


@pytest.mark.parametrize("space", ["nb201", "fbnet"])
def test_the_example_search_keeps_only_archs_under_the_limit(client: Client, space: str) -> None:
    example = load_example()
    search_space = example.SearchSpace(space)
    archs = [search_space.space.encode(a) for a in search_space.space.sample(10, 0)]
    csv = "space,arch,device,latency_ms\n" + "".join(f'{space},"{a}",d,1.0\n' for a in archs)
    [device_id] = client.import_dataset([("d.csv", csv.encode())], "d").device_ids
    client.upload_predictor(
        to_artifact(random_predictor()), device_id=device_id, runtime="unknown", space=space
    )
    predict = example.Predictions(client, device_id, search_space)
    all_ms = predict(search_space.space.sample(200, 1))
    limit = float(np.median(all_ms))
    feasible = example.search(predict, limit, population=20, sample=5, steps=5, batch=30, seed=0)
    assert feasible and all(ms <= limit and search_space.allowed(a) for a, ms in feasible)
    assert predict.queries >= 200 + 20 + 5 * 30 and predict.version.startswith("gcn ")
