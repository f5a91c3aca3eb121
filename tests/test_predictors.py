"""The GCN predictor: features, the numpy forward pass against PyTorch, training on real
published latencies, the artifact, and the prediction endpoint."""

from __future__ import annotations

import pickle
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from latlab.client import Client
from latlab.errors import ApiError
from latlab.spaces.nb201 import Nb201
from predictors.errors import PredictorError
from predictors.features import FEATURES, batch, graph_features
from predictors.forward import gcn_forward
from predictors.gcn import Gcn
from predictors.model import GcnConfig, GcnPredictor, TargetScale
from predictors.train import split_indices, train_gcn
from tests.factories import shared_path

SPACE = Nb201()
A53 = "data/latbench/mobile-cpu-snapdragon-450-cortex-a53-int8.pickle"
SMALL = GcnConfig(hidden=32, layers=2, epochs=30, lr=1e-3, target="log", dropout=0.0)


def features(archs: list[str]) -> list:
    return [graph_features(SPACE.predictor_graph(SPACE.parse(a))) for a in archs]


def random_predictor(config: GcnConfig = SMALL, members: int = 1) -> GcnPredictor:
    weights = []
    for k in range(members):
        torch.manual_seed(k)
        model = Gcn(FEATURES, config.hidden, config.layers, config.dropout)
        weights.append({n: v.detach().numpy().copy() for n, v in model.state_dict().items()})
    return GcnPredictor(config, TargetScale("log", 0.0, 1.0), tuple(weights))


def published(n: int) -> tuple[list[str], np.ndarray]:
    table = pickle.loads(shared_path(A53).read_bytes())
    items = list(table.items())[:n]
    return [SPACE.from_vector(v).string for v, _ in items], np.array([s * 1e3 for _, s in items])


# --------------------------------------------------------------------------- features


def test_the_global_node_joins_every_node_and_the_adjacency_is_normalised() -> None:
    [f] = features(
        [
            "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
        ]
    )
    assert f.x.shape == (22, FEATURES) and f.x[0, 0] == 1.0  # 21 ops + the global node
    assert np.all(f.adj[0] > 0) and np.allclose(f.adj, f.adj.T)
    degree = (f.adj > 0).sum(axis=1)
    assert np.allclose(f.adj[0, 0], 1 / degree[0])  # D^-1/2 (A + I) D^-1/2 on the diagonal
    assert np.all((f.x[1:, FEATURES - 9 :] >= 0) & (f.x[1:, FEATURES - 9 :] <= 1.5))


def test_isomorphic_cells_get_the_same_prediction() -> None:
    groups: dict[str, list[str]] = defaultdict(list)
    for i in range(0, SPACE.size, 7):
        arch = SPACE.from_index(i)
        groups[arch.unique_key].append(arch.string)
    pairs = [g[:2] for g in groups.values() if len(g) >= 2][:20]
    assert len(pairs) == 20
    predictor = random_predictor()
    for a, b in pairs:
        pa, _ = predictor.predict(features([a]))
        pb, _ = predictor.predict(features([b]))
        assert pa == pytest.approx(pb, rel=1e-5), (a, b)


def test_a_node_permutation_does_not_change_the_prediction() -> None:
    [f] = features(
        [
            "|nor_conv_1x1~0|+|avg_pool_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|avg_pool_3x3~2|"
        ]
    )
    order = np.concatenate([[0], 1 + np.random.default_rng(0).permutation(f.nodes - 1)])
    permuted = replace(f, x=f.x[order], adj=f.adj[np.ix_(order, order)])
    predictor = random_predictor()
    assert predictor.predict([f])[0] == pytest.approx(predictor.predict([permuted])[0], rel=1e-5)


# --------------------------------------------------------------------------- forward pass


def test_the_numpy_forward_pass_is_the_torch_model_batched_or_alone() -> None:
    config = GcnConfig(hidden=48, layers=3, dropout=0.3)
    torch.manual_seed(3)
    model = Gcn(FEATURES, config.hidden, config.layers, config.dropout).eval()
    feats = features(
        [a.string for a in SPACE.sample(9, seed=1)]
        + ["|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"]
    )
    data = batch(feats)
    with torch.no_grad():
        expected = model(torch.from_numpy(data.x), torch.from_numpy(data.adj)).numpy()
    weights = {n: v.detach().numpy() for n, v in model.state_dict().items()}
    assert np.allclose(gcn_forward(weights, config.layers, data), expected, rtol=1e-4, atol=1e-5)
    alone = [gcn_forward(weights, config.layers, batch([f]))[0] for f in feats]
    assert np.allclose(alone, expected, rtol=1e-4, atol=1e-5)  # padding changes nothing


# --------------------------------------------------------------------------- training and artifact


def test_training_on_real_published_latencies_lowers_the_held_out_error() -> None:
    archs, latency = published(400)
    feats = features(archs)
    split = split_indices(len(archs), 250, 50, seed=0)
    untrained, _ = train_gcn(feats, latency, replace(SMALL, epochs=1, lr=1e-9), split)
    trained, report = train_gcn(feats, latency, SMALL, split)
    test = list(split.test)
    before = np.mean(np.abs(untrained.predict([feats[i] for i in test])[0] - latency[test]))
    after = np.mean(np.abs(trained.predict([feats[i] for i in test])[0] - latency[test]))
    assert after < 0.5 * before
    assert report.test.n == 100 and report.test.spearman > 0.8
    assert len(report.predicted_ms) == len(report.true_ms) == 100


def test_a_cost_baseline_takes_the_linear_part_so_little_data_goes_further() -> None:
    archs, latency = published(600)
    feats = features(archs)
    split = split_indices(len(archs), 45, 5, seed=0)  # 50 archs to learn from
    test = list(split.test)
    without, plain = train_gcn(feats, latency, SMALL, split)
    with_cost, based = train_gcn(feats, latency, replace(SMALL, baseline="cost"), split)
    assert without.baseline is None and with_cost.baseline is not None
    assert based.test.mape < plain.test.mape and based.test.n == plain.test.n == 550
    # the network's output times the baseline is the prediction, reloaded or not
    fit = with_cost.baseline([feats[i] for i in test])
    assert np.all(fit > 0)
    again = GcnPredictor.from_bytes(with_cost.to_bytes())
    assert again.baseline == with_cost.baseline
    assert np.array_equal(again.predict(feats[:7])[0], with_cost.predict(feats[:7])[0])


def test_graph_features_carry_the_graph_cost() -> None:
    arch = SPACE.parse(
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    )
    graph = SPACE.predictor_graph(arch)
    from latlab.opkey import op_cost

    costs = [op_cost(graph, n) for n in graph.nodes]
    mflops, mb = graph_features(graph).cost
    assert mflops == pytest.approx(sum(c.flops for c in costs) / 1e6)
    assert mb == pytest.approx(sum(c.bytes_moved for c in costs) / 1e6) and mflops > 0


def test_a_saved_predictor_reloads_and_predicts_the_same_numbers() -> None:
    predictor = replace(
        random_predictor(members=3), meta={"device_id": "d", "test": {"rmse_ms": 0.1}}
    )
    again = GcnPredictor.from_bytes(predictor.to_bytes())
    feats = features([a.string for a in SPACE.sample(20, seed=2)])
    mean, std = predictor.predict(feats)
    mean2, std2 = again.predict(feats)
    assert np.array_equal(mean, mean2) and std is not None and np.array_equal(std, std2)
    assert again.config == predictor.config and again.meta == predictor.meta


def test_a_corrupt_artifact_is_refused() -> None:
    with pytest.raises(PredictorError):
        GcnPredictor.from_bytes(b"not an npz at all")
    with pytest.raises(PredictorError):
        GcnPredictor.from_bytes(random_predictor().to_bytes()[:200])


def test_a_split_needs_room_for_a_test_set() -> None:
    with pytest.raises(PredictorError):
        split_indices(10, 8, 2, seed=0)
    s = split_indices(10, 5, 2, seed=0)
    assert sorted(s.train + s.val + s.test) == list(range(10)) and len(s.test) == 3


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
    assert err.value.status == 404 and "no current GCN" in err.value.message

    predictor = random_predictor(members=2)
    registered = client.upload_predictor(
        predictor.to_bytes(), device_id=device_id, runtime="unknown", space="nb201"
    )
    assert registered.version == 1 and registered.current
    out = client.predict(device_id, space="nb201", archs=archs[:5])  # auto: the GCN
    expected, spread = predictor.predict(features(archs[:5]))
    assert out.predictor == "gcn" and out.version == registered.id
    assert [p.latency_ms for p in out.predictions] == pytest.approx(expected.tolist(), rel=1e-5)
    assert spread is not None
    assert [p.uncertainty_ms for p in out.predictions] == pytest.approx(spread.tolist(), rel=1e-4)

    second = client.upload_predictor(
        random_predictor(members=1).to_bytes(),
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
        ({"space": "proxyless", "archs": [0]}, 404, "no current GCN"),
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
            random_predictor(members=members).to_bytes(),
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


def test_the_example_search_keeps_only_archs_under_the_limit(client: Client) -> None:
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "examples" / "latency_constrained_search.py"
    spec = importlib.util.spec_from_file_location("latency_constrained_search", path)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)

    archs, _ = published(10)
    csv = "space,arch,device,latency_ms\n" + "".join(f"nb201,{a},d,1.0\n" for a in archs)
    [device_id] = client.import_dataset([("d.csv", csv.encode())], "d").device_ids
    client.upload_predictor(
        random_predictor().to_bytes(), device_id=device_id, runtime="unknown", space="nb201"
    )
    predict = example.Predictions(client, device_id)
    all_ms, _ = random_predictor().predict(
        features([SPACE.from_index(i).string for i in range(0, SPACE.size, 50)])
    )
    limit = float(np.median(all_ms))
    feasible = example.search(predict, limit, population=20, sample=5, steps=5, batch=30, seed=0)
    assert feasible and all(ms <= limit and arch.connected for arch, ms in feasible)
    assert predict.queries >= 20 + 5 * 30 and predict.version.startswith("gcn ")
