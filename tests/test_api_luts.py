"""LUTs through the API: built from a real agent's measurements (per-op rows, and micro-models
queued on the device), exported, and answering /v1/predict; bad requests are 4xx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from latlab.client import Client
from latlab.errors import ApiError
from latlab.runtimes.onnxruntime import OnnxRuntimeConfig
from latlab.schemas import DatasetCreate, LutCreate, LutFormat, LutOut, LutSource
from latlab.server.embedded import EmbeddedServer
from latlab.spaces.nb201 import Nb201
from tests.factories import API_KEY, make_settings, register, scrape
from tests.test_e2e import start_agent

FAST = OnnxRuntimeConfig(
    protocol="fixed", warmup_runs=2, warmup_s=0, timed_runs=10, timed_s=0, profile_runs=5
)
SPACE = Nb201()
ARCHS = [a.string for a in SPACE.sample(6, seed=11)]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, str, str]]:
    """One server and agent for the module, with 6 NB201 archs measured (per-op rows on):
    the client, the server's URL and the device's id."""
    tmp = tmp_path_factory.mktemp("lab")
    with EmbeddedServer(make_settings(tmp, f"sqlite:///{tmp / 'db.sqlite'}")) as server:
        agent = start_agent(server.url, tmp, name="cpu-lut")
        with Client(server.url, API_KEY) as client:
            device = client.devices()[0]
            dataset = client.create_dataset(
                DatasetCreate(
                    name="lut-base", space="nb201", archs=ARCHS, device_ids=[device.id], config=FAST
                )
            )
            assert client.wait_dataset(dataset.id, timeout_s=300).progress.done == 6
            yield client, server.url, device.id
        agent.close()


def built(client: Client, body: LutCreate) -> LutOut:
    lut = client.wait_lut(client.create_lut(body).id, timeout_s=300, poll_s=0.2)
    assert lut.state == "ready", lut.error
    return lut


def test_a_lut_from_measured_ops_predicts_the_measured_archs(
    lab: tuple[Client, str, str],
) -> None:
    client, url, device_id = lab
    lut = built(client, LutCreate(device_id=device_id, source=LutSource.measured_ops, config=FAST))
    assert lut.entries > 10 and lut.calibration is not None and lut.calibration.n_models == 6
    assert lut.rules == "onnxruntime"

    before = scrape(url)
    out = client.predict(device_id, space="nb201", archs=ARCHS)
    assert out.version == lut.id and [p.item for p in out.predictions] == ARCHS
    measured = {m.model_id: m.stats.median_ms for m in client.measurements(device_id=device_id)}
    assert len(measured) == 6
    assert all(p.latency_ms > 0 and p.kernels > 20 and p.estimated == [] for p in out.predictions)
    # by index and by vector too: the same arch, the same answer
    again = client.predict(device_id, space="nb201", archs=[SPACE.parse(ARCHS[0]).index])
    assert again.predictions[0].latency_ms == out.predictions[0].latency_ms

    by_model = client.predict(device_id, model_ids=list(measured))
    assert len(by_model.predictions) == 6
    after = scrape(url)
    calls = 'latlab_predict_seconds_count{predictor="lut"}'
    assert after[calls] - before.get(calls, 0) == 3
    archs = "latlab_predict_archs_total"
    assert after[archs] - before.get(archs, 0) == 6 + 1 + 6

    exported = json.loads(client.export_lut(lut.id, LutFormat.json))
    assert exported["source"] == "measured-ops" and exported["meta"]["device_id"] == device_id
    table = yaml.safe_load(client.export_lut(lut.id, LutFormat.yaml))
    assert len(table) == lut.entries and all(
        {"count", "mean", "std"} == set(v) for v in table.values()
    )


def test_a_lut_from_micro_models_measures_each_kernel_once_on_the_device(
    lab: tuple[Client, str, str],
) -> None:
    client, _, device_id = lab
    lut = built(
        client,
        LutCreate(
            device_id=device_id,
            source=LutSource.micro_models,
            config=FAST,
            space="nb201",
            archs=ARCHS,
        ),
    )
    p = lut.progress
    assert p.kernels == p.done == lut.entries > 10 and p.failed == p.pending == 0
    assert lut.calibration is not None and lut.calibration.n_models == 6  # the whole models only
    assert len(client.jobs(limit=1000)) == 6 + p.kernels  # the campaign's, then one per kernel
    meta = json.loads(client.export_lut(lut.id, LutFormat.json))["meta"]
    assert meta["micro_timing"] == {"profiled-kernel": p.kernels}

    out = client.predict(device_id, space="nb201", archs=ARCHS, version=lut.id)
    assert out.version == lut.id and all(x.latency_ms > 0 for x in out.predictions)

    # a wider network: its convs are new keys, estimated and listed
    wide = client.predict(
        device_id, space="nb201", archs=ARCHS[:1], version=lut.id, space_params={"resolution": 64}
    )
    assert wide.predictions[0].estimated


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"device_id": "nope", "source": "measured-ops"}, 404, "no device"),
        ({"source": "micro-models"}, 422, "needs a space"),
        ({"source": "micro-models", "space": "nasbench101", "n": 3}, 422, "unknown search space"),
        ({"source": "micro-models", "space": "nb201", "archs": ["|bad~0|"]}, 422, "NAS-Bench-201"),
        (
            {"source": "measured-ops", "config": {"threads": 2}},
            422,
            "no measurement with per-op rows",
        ),
    ],
)
def test_a_bad_lut_request_is_refused(
    lab: tuple[Client, str, str], body: dict, status: int, message: str
) -> None:
    client, _, device_id = lab
    before = len(client.luts())
    with pytest.raises(ApiError) as err:
        client.create_lut(LutCreate.model_validate({"device_id": device_id, **body}))
    assert err.value.status == status and message in err.value.message
    assert len(client.luts()) == before


def test_bad_predictions_are_refused(lab: tuple[Client, str, str]) -> None:
    client, url, device_id = lab
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("nope", {"space": "nb201", "archs": [1]}, 404, "no device"),
        (device_id, {"space": "nb201", "archs": ["|x~0|"]}, 422, "NAS-Bench-201"),
        (device_id, {"space": "nope", "archs": [1]}, 422, "unknown search space"),
        (device_id, {"archs": [1]}, 422, "need a space"),
        (device_id, {"model_ids": ["0" * 64]}, 404, "no model"),
    ]
    for target, kwargs, status, message in cases:
        with pytest.raises(ApiError) as err:
            client.predict(target, **kwargs)
        assert err.value.status == status and message in err.value.message, kwargs

    other, reg = register(url, name="no-lut")
    other.close()
    with pytest.raises(ApiError) as err:
        client.predict(reg.device_id, space="nb201", archs=[1])
    assert err.value.status == 404 and "no latency model" in err.value.message
