"""Predictors behind one interface: every kind (the LUT, the GCN, a plug-in's) is a
``LatencyModel`` whose artifact names its kind; the registry, the upload endpoint and
``/v1/predict`` take any registered kind and name none."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from latlab import latency_model, plugins
from latlab.client import Client
from latlab.errors import ApiError
from latlab.latency_model import ArtifactError, kinds, read_artifact, to_artifact
from latlab.lut.model import LutModel
from latlab.lut.table import LookupTable, LutSource, TypeFit
from latlab.opkey import graph_cost
from latlab.predictors.model import GcnPredictor
from latlab.spaces.nb201 import Nb201
from tests.plugins.macs_kind import MacsLine
from tests.test_predictors import random_predictor
from tests.test_runtime_plugins import install_entry_points

SPACE = Nb201()


def small_lut() -> LutModel:
    """A table with no entries: every kernel estimated by its op type's line (enough to
    predict any NB201 arch)."""
    fit = {
        t: TypeFit(op_type=t, intercept_us=5.0, us_per_mflop=1.0, us_per_mb=2.0, n=3)
        for t in (
            "Conv+BatchNormalization+Relu",
            "Conv+BatchNormalization",
            "AveragePool",
            "Add",
            "GlobalAveragePool",
            "Gemm",
            "Relu",
            "Conv+BatchNormalization+Add",
            "Conv+BatchNormalization+Add+Relu",
            "BatchNormalization+Relu",
            "Conv+BatchNormalization+Mul",
            "Mul",
            "Flatten",
            "Conv",
            "Reshape",
        )
    }
    return LutModel(LookupTable("onnxruntime", LutSource.measured_ops, {}, fallback=fit))


def test_every_kind_round_trips_through_its_artifact_which_names_it() -> None:
    graphs = [SPACE.graph(SPACE.from_index(i)) for i in (1, 500, 9000)]
    for model in (random_predictor(), small_lut(), MacsLine(0.02, 0.1)):
        artifact = to_artifact(model)
        assert latency_model.artifact_kind(artifact)[0] == model.kind
        if model.kind not in kinds():
            continue  # the plug-in is not installed here (its own test installs it)
        again = read_artifact(artifact)
        assert type(again) is type(model)
        before, after = model.predict_graphs(graphs), again.predict_graphs(graphs)
        assert after.latency_ms.tolist() == pytest.approx(before.latency_ms.tolist())


def test_a_gcn_artifact_written_before_the_header_still_reads() -> None:
    model = random_predictor()
    assert isinstance(read_artifact(model.payload()), GcnPredictor)


def test_what_is_not_an_artifact_is_refused_with_the_reason() -> None:
    with pytest.raises(ArtifactError, match="not a latlab latency-model artifact"):
        read_artifact(b"{}")
    with pytest.raises(
        ArtifactError, match="unknown predictor kind 'xgboost'; known: lut, gcn, transfer"
    ):
        read_artifact(latency_model.MAGIC + b'{"kind": "xgboost"}\n...')
    with pytest.raises(ArtifactError, match="without its header"):
        read_artifact(latency_model.MAGIC + b'{"kind": "gcn"}')


def test_a_kind_a_package_declares_is_registered_and_a_broken_one_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    site = install_entry_points(
        tmp_path,
        ["macs-line = tests.plugins.macs_kind:MacsLine", "nope = tests.plugins.nowhere:Nope"],
        group=latency_model.ENTRY_POINT_GROUP,
    )
    monkeypatch.setattr(latency_model.REGISTRY, "_found", None)  # what this test finds stays here
    monkeypatch.syspath_prepend(str(site))
    with caplog.at_level(logging.WARNING, logger=plugins.__name__):
        found = kinds()
    assert list(found) == ["lut", "gcn", "transfer", "macs-line"]
    assert "tests.plugins.nowhere" in caplog.text


@pytest.fixture
def with_macs_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    """The plug-in installed in this process (what its entry point does in a fresh one)."""
    monkeypatch.setattr(latency_model.REGISTRY, "_found", {**kinds(), MacsLine.kind: MacsLine})


def test_a_plug_in_kind_is_registered_served_and_picked_by_auto(
    client: Client, with_macs_kind: None
) -> None:
    dataset = client.import_dataset(
        [("a.csv", b"space,arch,device,latency_ms\nnb201,1,a53,1.5\n")], "a"
    )
    [device_id] = dataset.device_ids
    line = MacsLine(ms_per_mmac=0.02, intercept_ms=0.1)
    registered = client.upload_predictor(
        to_artifact(line), device_id=device_id, runtime="unknown", space="nb201"
    )
    assert registered.kind == "macs-line" and registered.metrics == {"served": "macs-line"}

    archs = [1, 500, 9000]
    expected = [0.1 + 0.02 * graph_cost(SPACE.graph(SPACE.from_index(a))).macs / 1e6 for a in archs]
    for choice in ("auto", "macs-line"):
        out = client.predict(device_id, space="nb201", archs=archs, predictor=choice)
        assert out.predictor == "macs-line" and out.version == registered.id
        assert [p.latency_ms for p in out.predictions] == pytest.approx(expected)
    with pytest.raises(ApiError) as err:
        client.predict(device_id, space="nb201", archs=archs, predictor="gcn")
    assert err.value.status == 404 and "no current gcn for archs of nb201" in err.value.message
    with pytest.raises(ApiError) as err:
        client.predict(device_id, space="nb201", archs=archs, predictor="xgboost")
    assert (
        err.value.status == 422
        and "one of auto, lut, gcn, transfer, macs-line" in err.value.message
    )


def test_an_artifact_of_an_unknown_kind_is_refused_at_upload(client: Client) -> None:
    dataset = client.import_dataset(
        [("a.csv", b"space,arch,device,latency_ms\nnb201,1,a53,1.5\n")], "a"
    )
    with pytest.raises(ApiError) as err:
        client.upload_predictor(
            to_artifact(MacsLine(0.02, 0.1)),
            device_id=dataset.device_ids[0],
            runtime="unknown",
            space="nb201",
        )
    assert err.value.status == 422 and "unknown predictor kind 'macs-line'" in err.value.message
