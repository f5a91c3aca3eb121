"""Transfer predictors: a device from a few of its own measurements and other devices' latencies
(latlab.predictors.transfer, POST /v1/predictors/transfer[/plan], Client.adapt, latlab adapt)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from latlab.client import Client
from latlab.errors import ApiError
from latlab.latency_model import read_artifact, to_artifact
from latlab.metrics import spearman
from latlab.predictors.errors import PredictorError
from latlab.predictors.features import arch_features
from latlab.predictors.transfer import (
    SourceTable,
    TransferBasis,
    TransferPredictor,
    choose,
    fit_transfer,
    guard,
    served_predictions,
)
from latlab.runtimes.onnxruntime import OnnxRuntimeConfig
from latlab.schemas import (
    CampaignStrategy,
    DatasetCreate,
    DatasetState,
    DeviceOut,
    TransferFitIn,
    TransferPlanIn,
)
from latlab.server.embedded import EmbeddedServer
from latlab.spaces.nb201 import Nb201
from tests.factories import API_KEY, SHARED, make_settings
from tests.test_e2e import start_agent

LATBENCH = SHARED / "data" / "latbench"
TARGET = LATBENCH / "mobile-cpu-snapdragon-675-kryo-460-int8.pickle"
#: Every other LatBench device: the sources the bench evaluates with.
SOURCES = sorted(p for p in LATBENCH.glob("*.pickle") if p != TARGET)
#: Enough sources for the API's paths, quicker to import.
FEW = [p for p in SOURCES if "i7" in p.name or "nano-fp16" in p.name or "855-hexagon" in p.name]


def synthetic(n_archs: int = 300, n_sources: int = 5, seed: int = 0) -> dict[str, dict[str, float]]:
    rng = np.random.default_rng(seed)
    base = rng.normal(size=n_archs)
    return {
        f"s{d}": {
            f"a{i}": float(np.exp(1.0 + (0.5 + 0.2 * d) * base[i] + 0.3 * rng.normal()))
            for i in range(n_archs)
        }
        for d in range(n_sources)
    }


@pytest.fixture(scope="module")
def basis() -> TransferBasis:
    return TransferBasis.of(SourceTable.of(synthetic()))


def test_a_target_that_mixes_its_sources_is_recovered_from_ten_archs(basis: TransferBasis) -> None:
    log = basis.table.log_ms
    truth = np.exp(0.4 + 0.6 * log[:, 0] + 0.5 * log[:, 3])
    archs = choose(basis, 10, seed=0)
    rows = basis.rows(archs)
    fit = fit_transfer(basis, archs, truth[rows].tolist())
    assert spearman(fit.log_mean.tolist(), truth.tolist()) > 0.999
    assert np.max(np.abs(np.exp(fit.log_mean) / truth - 1)) < 0.01


def test_the_stated_uncertainty_covers_the_truth_about_as_often_as_it_says(
    basis: TransferBasis,
) -> None:
    log = basis.table.log_ms
    rng = np.random.default_rng(1)
    noisy = np.exp(0.3 + 0.8 * log[:, 1] + 0.2 * rng.normal(size=len(log)))
    archs = choose(basis, 30, seed=3)
    fit = fit_transfer(basis, archs, noisy[basis.rows(archs)].tolist())
    rest = np.setdiff1d(np.arange(len(log)), basis.rows(archs))
    z = (np.log(noisy[rest]) - fit.log_mean[rest]) / fit.log_std[rest]
    assert 0.85 <= np.mean(np.abs(z) <= 1.96) <= 0.99  # a 95 % interval


def nb201_sources(n_archs: int = 200) -> TransferBasis:
    """Three made-up devices over real NAS-Bench-201 archs: random per-op costs each."""
    space = Nb201()
    archs = [space.encode(a) for a in space.sample(n_archs, 0)]
    rng = np.random.default_rng(0)
    data = {}
    for d in range(3):
        per_op = rng.uniform(0.1, 1.0, size=30)
        data[f"d{d}"] = {a: float(1 + space.encoding(space.parse(a)) @ per_op) for a in archs}
    return TransferBasis.of(SourceTable.of(data))


def test_the_guard_serves_the_arch_s_own_costs_where_the_sources_do_not_fit() -> None:
    """A device whose latency is its archs' FLOPs, unlike every source: the guard serves the
    linear model of the arch's own costs, and it ranks the rest far better than transfer."""
    basis = nb201_sources()
    table = list(basis.table.archs)
    features = arch_features("nb201", {}, table)
    truth = np.array([0.2 + 0.01 * f.cost_pruned[0] for f in features])  # ms from MFLOPs
    picked = choose(basis, 20, seed=0)
    rows = basis.rows(picked)
    y = truth[rows].tolist()
    chosen = guard(basis, picked, y, [features[i] for i in rows])
    assert chosen.served.startswith("linear:") or chosen.weight <= 0.25, chosen.served
    assert set(chosen.candidates) >= {"transfer", "linear:cost", "linear:full"}
    log_mean, log_std = served_predictions(
        basis, picked, y, chosen, lambda: features, [features[i] for i in rows]
    )
    plain = fit_transfer(basis, picked, y)
    assert spearman(log_mean.tolist(), truth.tolist()) > 0.99
    assert spearman(log_mean.tolist(), truth.tolist()) > spearman(
        plain.log_mean.tolist(), truth.tolist()
    )
    assert np.all(log_std > 0)


def test_the_guard_keeps_the_transfer_model_where_the_sources_explain_the_device() -> None:
    basis = nb201_sources()
    table = list(basis.table.archs)
    features = arch_features("nb201", {}, table)
    truth = np.exp(0.3 + 0.7 * basis.table.log_ms[:, 0] + 0.4 * basis.table.log_ms[:, 2])
    picked = choose(basis, 20, seed=1)
    rows = basis.rows(picked)
    chosen = guard(basis, picked, truth[rows].tolist(), [features[i] for i in rows])
    assert chosen.weight >= 0.75, chosen.served
    assert chosen.cv["n"] == 20 and chosen.cv["spearman"] > 0.95


@settings(max_examples=25, deadline=None)
@given(k=st.integers(1, 40), seed=st.integers(0, 2**31 - 1), offset=st.integers(0, 100))
def test_choose_gives_k_distinct_candidates_and_repeats_itself(
    basis: TransferBasis, k: int, seed: int, offset: int
) -> None:
    candidates = list(basis.table.archs[offset : offset + 150])
    chosen = choose(basis, k, seed, candidates)
    assert len(chosen) == len(set(chosen)) == k
    assert set(chosen) <= set(candidates)
    assert choose(basis, k, seed, candidates) == chosen


def test_sources_that_cover_too_little_are_left_out_and_said() -> None:
    data = synthetic()
    data["few"] = dict(list(data["s0"].items())[:100])
    table = SourceTable.of(data)
    assert "few" not in table.sources and "under half" in table.left_out["few"]
    assert len(table.archs) == 300


def test_an_arch_some_sources_lack_is_filled_in_from_the_others_and_served() -> None:
    data = synthetic(n_sources=6)
    whole = TransferBasis.of(SourceTable.of(data))
    rng = np.random.default_rng(4)
    holes = {s: {f"a{i}" for i in rng.choice(300, 30, replace=False)} for s in ("s0", "s2", "s5")}
    cut = {s: {a: v for a, v in t.items() if a not in holes.get(s, ())} for s, t in data.items()}
    cut["s1"]["lonely"] = 1.0  # one source of six: not covered
    holed = TransferBasis.of(SourceTable.of(cut))

    assert holed.table.archs == whole.table.archs  # every arch at least half of them have
    assert int(holed.table.complete.sum()) < 300
    for source, missing in holes.items():
        j = holed.table.sources.index(source)
        rows = holed.rows(sorted(missing))
        error = holed.z[rows, j] - whole.z[rows, j]
        # the conditional mean beats the source's own mean (z = 0) by far: s0's noise is a
        # quarter of its variance, so about half its spread is left (0.42-0.58 over seeds)
        assert np.sqrt(np.mean(error**2)) < 0.7 * np.sqrt(np.mean(whole.z[rows, j] ** 2))
    truth = np.exp(0.2 + 0.5 * whole.table.log_ms[:, 0] + 0.5 * whole.table.log_ms[:, 5])
    archs = choose(holed, 15, seed=1)
    assert holed.table.complete[holed.rows(archs)].all()  # measured where the features are
    fit = fit_transfer(holed, archs, truth[holed.rows(archs)].tolist())
    gappy = ~holed.table.complete
    assert gappy.sum() >= 60 and np.all(np.isfinite(fit.log_mean))
    assert spearman(fit.log_mean[gappy].tolist(), truth[gappy].tolist()) > 0.95


def test_too_few_samples_or_too_many_choices_are_refused(basis: TransferBasis) -> None:
    archs = list(basis.table.archs[:2])
    with pytest.raises(PredictorError, match="at least 3"):
        fit_transfer(basis, archs, [1.0, 2.0])
    with pytest.raises(PredictorError, match="301 archs asked for, 300"):
        choose(basis, 301)
    with pytest.raises(PredictorError, match="not in the sources"):
        fit_transfer(basis, ["nope", *archs], [1.0, 1.0, 1.0])


def test_the_artifact_reads_back_as_its_kind_and_answers_only_its_archs() -> None:
    space = Nb201()
    archs = [space.encode(space.from_index(i)) for i in range(40)]
    rng = np.random.default_rng(0)
    data = {f"d{d}": {a: float(rng.uniform(1, 3)) for a in archs} for d in range(3)}
    basis = TransferBasis.of(SourceTable.of(data))
    fit = fit_transfer(basis, archs[:6], [1.5, 2.0, 1.2, 2.5, 1.8, 1.1])
    model = TransferPredictor(
        "nb201", {}, basis.table.archs, fit.log_mean, fit.log_std, {"samples": 6}
    )
    again = read_artifact(to_artifact(model))
    assert isinstance(again, TransferPredictor) and again.kind == "transfer"
    out = again.predict_archs("nb201", {}, [space.from_index(0), space.parse(archs[5])])
    expected = np.exp(fit.log_mean[basis.rows([archs[0], archs[5]])])
    assert out.latency_ms == pytest.approx(expected, rel=1e-6)
    assert out.uncertainty_ms is not None and np.all(out.uncertainty_ms > 0)
    with pytest.raises(PredictorError, match="not among the 40 archs"):
        again.predict_archs("nb201", {}, [space.from_index(1000)])
    with pytest.raises(PredictorError, match="answers nb201"):
        again.predict_archs("proxyless", {}, [space.from_index(0)])
    with pytest.raises(PredictorError, match="not models"):
        again.predict_graphs([])


# --------------------------------------------------------------------------- through the server


@pytest.fixture
def lab(client: Client) -> Iterator[Client]:
    """A server holding three LatBench devices (the sources) and a fourth (the target)."""
    client.import_dataset([*FEW, TARGET], "latbench", note="BRP-NAS / Eagle, Apache-2.0")
    yield client


def target_id(client: Client) -> str:
    [device] = [d for d in client.devices() if d.name == TARGET.stem]
    return device.id


@pytest.mark.slow
def test_from_imported_devices_a_held_out_device_beats_its_gcn_from_scratch(
    client: Client,
) -> None:
    from latlab.predictors.features import arch_features
    from latlab.predictors.presets import PRESETS
    from latlab.predictors.train import train_predictor

    lab = client
    lab.import_dataset([*SOURCES, TARGET], "latbench", note="BRP-NAS / Eagle, Apache-2.0")
    target = target_id(lab)
    adapted = lab.adapt(target, "nb201", samples=20)
    assert adapted.dataset is None and not adapted.plan.measure  # imported: taken from its data
    assert {s["name"] for s in adapted.plan.sources} == {p.stem for p in SOURCES}
    p = adapted.predictor
    assert p.kind == "transfer" and p.current and p.training["samples"] == 20
    assert p.metrics["cv"]["n"] == 20 and p.metrics["cv"]["spearman"] > 0.5

    every = lab.dataset_rows(lab.datasets()[0].id)
    rows = {r["arch"]: float(r["latency_ms"]) for r in every if r["device_id"] == target}
    shared = set.intersection(
        *({r["arch"] for r in every if r["device_id"] == s["id"]} for s in adapted.plan.sources)
    )  # the archs the predictor answers
    rest = sorted((set(rows) & shared) - set(adapted.plan.archs))
    test = [rest[i] for i in np.random.default_rng(0).choice(len(rest), 1000, replace=False)]
    answer = lab.predict(target, space="nb201", archs=test)
    assert answer.predictor == "transfer" and answer.version == p.id
    predicted = [x.latency_ms for x in answer.predictions]
    assert all(x.uncertainty_ms is not None and x.uncertainty_ms > 0 for x in answer.predictions)

    chosen = adapted.plan.archs
    gcn, _ = train_predictor(
        arch_features("nb201", {}, chosen), [rows[a] for a in chosen], PRESETS["latlab"]
    )
    from_scratch, _ = gcn.predict(arch_features("nb201", {}, test))
    truth = [rows[a] for a in test]
    rho_transfer = spearman(predicted, truth)
    rho_gcn = spearman(from_scratch.tolist(), truth)
    assert rho_transfer > rho_gcn and rho_transfer > 0.9, (rho_transfer, rho_gcn)


def test_a_space_without_other_devices_is_a_422_naming_what_to_do(
    client: Client, device: object
) -> None:
    [me] = client.devices()
    with pytest.raises(ApiError) as err:
        client.plan_transfer(TransferPlanIn(device_id=me.id, space="nb201", samples=5))
    assert err.value.status == 422 and "no other device has latencies for nb201" in str(err.value)
    assert "latlab dataset import" in str(err.value)


def test_more_samples_than_archs_an_imported_device_without_them_and_unknown_devices(
    lab: Client, tmp_path: Path
) -> None:
    target = target_id(lab)
    with pytest.raises(ApiError) as err:
        lab.plan_transfer(TransferPlanIn(device_id=target, space="nb201", samples=20_000))
    assert err.value.status == 422 and "20000 samples asked for, but only" in str(err.value)

    # a device imported for another space: no agent and no nb201 latencies to take samples from
    csv_file = tmp_path / "other.csv"
    csv_file.write_text(
        "space,arch,device,latency_ms\nproxyless,0,other-phone,5.0\nproxyless,1,other-phone,6.0\n"
    )
    lab.import_dataset([csv_file], "other")
    with pytest.raises(ApiError) as err:
        lab.plan_transfer(TransferPlanIn(device_id="other-phone", space="nb201", samples=5))
    assert err.value.status == 422 and "has no agent to measure on" in str(err.value)

    with pytest.raises(ApiError) as err:
        lab.fit_transfer(TransferFitIn(device_id="other-phone", space="nb201"))
    assert err.value.status == 422 and "needs at least 3" in str(err.value)

    with pytest.raises(ApiError) as err:
        lab.plan_transfer(TransferPlanIn(device_id="no-such-device", space="nb201"))
    assert err.value.status == 404
    with pytest.raises(ApiError) as err:
        lab.plan_transfer(TransferPlanIn(device_id=target, space="nb201", sources=[target]))
    assert err.value.status == 422 and "its own source" in str(err.value)
    assert len(lab.predictors()) == 0  # nothing registered half-way


def test_a_plan_chooses_among_the_candidates_given(lab: Client) -> None:
    target = target_id(lab)
    space = Nb201()
    among = [space.encode(space.from_index(i)) for i in range(10, 30)]
    plan = lab.plan_transfer(
        TransferPlanIn(device_id=target, space="nb201", samples=5, candidates=among)
    )
    assert len(set(plan.archs)) == 5 and set(plan.archs) <= set(among)
    with pytest.raises(ApiError) as err:
        lab.plan_transfer(
            TransferPlanIn(device_id=target, space="nb201", samples=25, candidates=among)
        )
    assert err.value.status == 422 and "among the candidates" in str(err.value)


@contextmanager
def _agent_server(
    tmp_path: Path, sqlite_url: str, imports: list[Path]
) -> Iterator[tuple[EmbeddedServer, Client, DeviceOut]]:
    with EmbeddedServer(make_settings(tmp_path, sqlite_url)) as server:
        agent = start_agent(server.url, tmp_path)
        try:
            with Client(server.url, API_KEY) as client:
                if imports:
                    client.import_dataset(imports, "latbench")
                [local] = [d for d in client.devices() if d.source == "agent"]
                yield server, client, local
        finally:
            agent.close()


@pytest.fixture
def agent_lab(
    tmp_path: Path, sqlite_url: str
) -> Iterator[tuple[EmbeddedServer, Client, DeviceOut]]:
    """A server with a real local agent (its device the target) and three LatBench sources."""
    with _agent_server(tmp_path, sqlite_url, FEW) as lab:
        yield lab


@pytest.fixture
def cold_lab(tmp_path: Path, sqlite_url: str) -> Iterator[tuple[EmbeddedServer, Client, DeviceOut]]:
    """A server with a real local agent and no other device: a lab's first campaign."""
    with _agent_server(tmp_path, sqlite_url, []) as lab:
        yield lab


@pytest.mark.slow
def test_latlab_adapt_measures_the_chosen_archs_on_the_local_agent_and_registers(
    agent_lab: tuple[EmbeddedServer, Client, DeviceOut],
) -> None:
    server, client, local = agent_lab
    command = [
        sys.executable, "-m", "latlab", "adapt", "--device", local.name,
        "--space", "nb201", "--samples", "5", "--wait",
        "--protocol", "fixed", "--warmup-runs", "2", "--warmup-s", "0",
        "--runs", "10", "--min-s", "0",
        "--server", server.url, "--api-key", API_KEY,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert (
        "transfer predictor" in done.stdout
        and "5 samples, 3 source devices, serves " in done.stdout
    )
    assert "cross-validated on the samples: rho" in done.stdout
    [dataset] = [d for d in client.datasets() if d.name == "adapt-nb201-k5-s0"]
    assert dataset.progress.done == 5 and dataset.device_ids == [local.id]
    [predictor] = client.predictors(local.id)
    assert predictor.kind == "transfer" and predictor.current
    answer = client.predict(local.id, space="nb201", archs=[0, 1, 2])
    assert answer.predictor == "transfer" and len(answer.predictions) == 3

    # the same command again follows the same campaign: no second one is measured
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert [d.name for d in client.datasets()].count("adapt-nb201-k5-s0") == 1


# --------------------------------------------------------------------------- active campaigns

FAST = OnnxRuntimeConfig(
    protocol="fixed", warmup_runs=2, warmup_s=0, timed_runs=10, timed_s=0, profile_runs=2
)


@pytest.mark.slow
def test_an_active_campaign_measures_in_rounds_with_an_estimate_after_each(
    agent_lab: tuple[EmbeddedServer, Client, DeviceOut],
) -> None:
    server, client, local = agent_lab
    body = DatasetCreate(
        name="active",
        space="nb201",
        strategy=CampaignStrategy.active,
        budget=10,
        round_size=4,
        device_ids=[local.id],
        config=FAST,
    )
    created = client.create_dataset(body)
    assert created.progress.archs == 4 and created.rounds == []  # the first round
    done = client.wait_dataset(created.id, timeout_s=600)
    assert done.state == DatasetState.done, done
    assert "error" not in done.provenance["active"], done.provenance["active"]["error"]
    assert done.progress.archs == 10 and done.progress.done == 10
    assert [(r.round, r.measured) for r in done.rounds] == [(1, 4), (2, 8), (3, 10)]
    assert all(r.cv["n"] == r.measured and r.cv["mape"] is not None for r in done.rounds)
    rows = client.dataset_rows(done.id)
    assert len({r["arch"] for r in rows}) == 10  # no arch measured twice

    predictor = client.predictor(done.provenance["active"]["predictor_id"])
    assert predictor.kind == "transfer" and predictor.training["samples"] == 10
    assert predictor.device_id == local.id and predictor.current

    # the rounds read back through the CLI as well
    status = subprocess.run(
        [sys.executable, "-m", "latlab", "dataset", "status", done.id,
         "--server", server.url, "--api-key", API_KEY],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    assert "round 3: 10 archs measured; estimated error (cross-validated)" in status.stdout


@pytest.mark.slow
def test_a_first_campaign_without_sources_starts_cold_on_the_archs_own_costs(
    cold_lab: tuple[EmbeddedServer, Client, DeviceOut],
) -> None:
    _, client, local = cold_lab
    body = DatasetCreate(
        name="cold",
        space="nb201",
        strategy=CampaignStrategy.active,
        budget=8,
        round_size=4,
        device_ids=[local.id],
        config=FAST,
    )
    created = client.create_dataset(body)
    assert created.progress.archs == 4 and created.provenance["active"]["cold"] == {"pool_seed": 0}
    done = client.wait_dataset(created.id, timeout_s=600)
    active = done.provenance["active"]
    assert done.state == DatasetState.done and "error" not in active, active
    assert [(r.round, r.measured) for r in done.rounds] == [(1, 4), (2, 8)]
    assert all(r.served.startswith("linear:") and r.cv["n"] == r.measured for r in done.rounds)
    assert len({r["arch"] for r in client.dataset_rows(done.id)}) == 8

    predictor = client.predictor(active["predictor_id"])
    assert predictor.kind == "gcn" and predictor.current and predictor.device_id == local.id
    assert predictor.metrics["served"] == done.rounds[-1].served
    space = Nb201()
    unseen = [space.encode(space.from_index(i)) for i in (7, 700, 7000)]
    out = client.predict(local.id, space="nb201", archs=list[str | int](unseen))
    assert out.version == predictor.id
    assert all(p.latency_ms > 0 for p in out.predictions)


def test_active_campaign_requests_are_checked_before_anything_is_stored(
    lab: Client, device: object
) -> None:
    [me] = [d for d in lab.devices() if d.source == "agent"]

    def refused(**values: object) -> str:
        body = {"name": "a", "space": "nb201", "device_ids": [me.id], **values}
        with pytest.raises(ApiError) as err:
            lab.create_dataset(DatasetCreate.model_validate(body))
        assert err.value.status == 422
        return str(err.value)

    assert "needs a budget" in refused(strategy="active")
    assert "not archs or n" in refused(strategy="active", budget=6, n=6)
    assert "for strategy=active" in refused(n=6, budget=6)
    assert "the sources cover" in refused(strategy="active", budget=20_000)
    # no other device has the space: a cold start, among a sample of it
    assert "chooses among 500 sampled archs" in refused(
        strategy="active", budget=600, space="proxyless"
    )
    latbench_device = next(d.id for d in lab.devices() if d.source != "agent")
    assert "no other device has latencies for proxyless among the sources named" in refused(
        strategy="active", budget=6, space="proxyless", sources=[latbench_device]
    )
    assert [d.name for d in lab.datasets()] == ["latbench"]  # nothing stored


@pytest.mark.parametrize(
    "command",
    [
        ["adapt", "--device", "d", "--space", "nb201", "--from", "all", "x"],
        [
            "dataset",
            "build",
            "--space",
            "nb201",
            "--device",
            "d",
            "--strategy",
            "active",
            "--budget",
            "8",
            "--from",
            "all",
            "x",
        ],
    ],
)
def test_from_takes_all_or_devices_not_both(command: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "latlab", *command, "--server", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "LATLAB_API_KEY": "k"},
    )
    assert done.returncode == 2 and "--from takes 'all' or device ids/names" in done.stderr
