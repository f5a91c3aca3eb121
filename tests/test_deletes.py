"""Deleting a dataset, a LUT, a predictor or a model through a live server, on SQLite and
PostgreSQL: what each takes with it (counted in the answer), what it leaves (measured
measurements other datasets share, jobs others need, blobs other rows name), and the refusals
(404 unknown, 403 read-only key, 409 a model still used or the canary's)."""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from latlab.client import AgentClient, Client
from latlab.errors import ApiError
from latlab.latency_model import to_artifact
from latlab.lut.model import LutModel
from latlab.lut.table import LookupTable, TypeFit
from latlab.lut.table import LutSource as TableSource
from latlab.runtimes.onnxruntime import OnnxRuntimeConfig
from latlab.schemas import (
    DatasetCreate,
    DatasetState,
    LutCreate,
    LutSource,
    LutState,
)
from latlab.server.embedded import EmbeddedServer
from latlab.spaces.nb201 import Nb201
from tests.factories import API_KEY, READ_API_KEY, cnn_bytes, make_settings, register, wait_for
from tests.test_api_jobs import result_for

SPACE = Nb201()
ARCHS = [a.string for a in SPACE.sample(4, seed=3)]
PNG = b"\x89PNG\r\n\x1a\n" + b"not really a picture"


@pytest.fixture
def client(server_on_both: EmbeddedServer) -> Iterator[Client]:
    with Client(server_on_both.url, API_KEY) as c:
        yield c


@pytest.fixture
def agent(server_on_both: EmbeddedServer) -> Iterator[tuple[AgentClient, str]]:
    """A registered device: its agent client and its id."""
    agent_client, registered = register(server_on_both.url)
    with agent_client:
        yield agent_client, registered.device_id


def blob_path(server: EmbeddedServer, sha256: str) -> Path:
    return server.settings.resolved_blob_dir / sha256[:2] / sha256[2:]


def measure_next(agent_client: AgentClient) -> str:
    """Claim the oldest queued job and upload a result for it (one per-op row); its id."""
    claim = agent_client.claim(wait_s=0)
    assert claim is not None
    agent_client.upload_result(claim.job_id, result_for(claim))
    return claim.job_id


def campaign(client: Client, device_id: str, archs: list[str], name: str) -> str:
    """A campaign of ``archs`` on the device, waited for until every arch is queued."""
    dataset = client.create_dataset(
        DatasetCreate(name=name, space="nb201", archs=archs, device_ids=[device_id])
    )
    wait_for(lambda: client.dataset(dataset.id).state != DatasetState.preparing)
    return dataset.id


def job_states(client: Client) -> Counter[str]:
    return Counter(j.state.value for j in client.jobs(limit=1000))


def refused(call: object) -> ApiError:
    with pytest.raises(ApiError) as err:
        call()  # type: ignore[operator]
    return err.value


# --------------------------------------------------------------------------- datasets


def test_a_campaign_delete_cancels_only_its_own_pending_jobs_and_keeps_measurements(
    client: Client, agent: tuple[AgentClient, str]
) -> None:
    agent_client, device_id = agent
    mine = campaign(client, device_id, ARCHS[:3], "mine")
    theirs = campaign(client, device_id, [ARCHS[0], ARCHS[2], ARCHS[3]], "theirs")
    # identical pending jobs are one job: the two campaigns share ARCHS[0]'s and ARCHS[2]'s
    assert job_states(client) == {"queued": 4}
    measure_next(agent_client)  # the oldest: ARCHS[0]'s, measured for both campaigns
    [measurement] = client.measurements()
    assert {r["arch"] for r in client.dataset_rows(theirs)} == {ARCHS[0]}

    deleted = client.delete_dataset(mine)

    assert deleted.kind == "dataset" and deleted.id == mine
    assert deleted.removed == {
        "datasets": 1,
        "dataset_archs": 3,
        "dataset_entries": 3,
        "measurements": 0,
        "op_measurements": 0,
    }
    assert deleted.changed == {"jobs_cancelled": 1}  # ARCHS[1]'s; ARCHS[2]'s is theirs too
    assert job_states(client) == {"done": 1, "queued": 2, "cancelled": 1}
    assert [m.id for m in client.measurements()] == [measurement.id]
    rows = client.dataset_rows(theirs)
    assert [(r["arch"], float(r["latency_ms"])) for r in rows] == [
        (ARCHS[0], measurement.stats.median_ms)
    ]
    assert client.dataset(theirs).progress.pending == 2
    assert refused(lambda: client.dataset(mine)).status == 404
    assert [d.id for d in client.datasets()] == [theirs]


def test_an_import_delete_removes_the_measurements_it_brought(
    client: Client, agent: tuple[AgentClient, str]
) -> None:
    agent_client, device_id = agent
    model = client.upload_model("m.onnx", data=cnn_bytes(seed=1))
    client.create_job(model.id, device_id=device_id)
    measure_next(agent_client)
    csv = "space,arch,device,latency_ms\n" + "".join(
        f"nb201,{a},a53,{1.5 + i}\n" for i, a in enumerate(ARCHS[:3])
    )
    imported = client.import_dataset([("a53.csv", csv.encode())], "a53")
    assert len(client.measurements()) == 4

    deleted = client.delete_dataset(imported.id)

    assert deleted.removed == {
        "datasets": 1,
        "dataset_archs": 3,
        "dataset_entries": 3,
        "measurements": 3,
        "op_measurements": 0,
    }
    assert deleted.changed == {"jobs_cancelled": 0}
    [kept] = client.measurements()
    assert kept.source == "measured" and kept.model_id == model.id
    # the device the import created stays (a later import of its name reuses it)
    assert imported.device_ids[0] in {d.id for d in client.devices()}


def test_a_campaign_still_being_prepared_stops_when_deleted(
    client: Client, agent: tuple[AgentClient, str]
) -> None:
    _, device_id = agent
    dataset = client.create_dataset(
        DatasetCreate(name="big", space="nb201", n=400, seed=1, device_ids=[device_id])
    )
    wait_for(lambda: len(client.jobs(limit=10)) >= 5)  # the builder is at work

    deleted = client.delete_dataset(dataset.id)

    queued = deleted.removed["dataset_entries"]
    assert deleted.removed["dataset_archs"] == 400 and 5 <= queued < 400
    assert deleted.changed == {"jobs_cancelled": queued}
    states = job_states(client)
    assert states == {"cancelled": queued}
    time.sleep(0.5)
    assert job_states(client) == states  # no arch is prepared after the delete
    assert client.datasets() == []


# --------------------------------------------------------------------------- LUTs


def test_a_lut_delete_takes_its_micro_model_jobs_and_measurements_unless_shared(
    client: Client, agent: tuple[AgentClient, str]
) -> None:
    agent_client, device_id = agent
    body = LutCreate(
        device_id=device_id, source=LutSource.micro_models, space="nb201", archs=ARCHS[:1]
    )
    first, second = client.create_lut(body), client.create_lut(body)
    for lut in (first, second):
        wait_for(lambda lut=lut: client.lut(lut.id).state == LutState.measuring)
    kernels = client.lut(first.id).progress.kernels
    assert kernels > 3 and client.lut(second.id).progress.kernels == kernels
    assert job_states(client) == {"queued": kernels}  # one job per kernel, shared
    measured_job = measure_next(agent_client)
    micro_model = client.job(measured_job).model_id
    # a micro-model is used by its LUTs: refused, naming them
    err = refused(lambda: client.delete_model(micro_model))
    assert err.status == 409 and "2 LUTs" in err.message and first.id in err.message

    deleted = client.delete_lut(first.id)

    assert deleted.kind == "lut" and deleted.removed == {
        "luts": 1,
        "lut_kernels": kernels,
        "jobs": 0,  # the other LUT needs every one of them
        "measurements": 0,
        "op_measurements": 0,
    }
    assert client.lut(second.id).progress.done == 1
    assert refused(lambda: client.lut(first.id)).status == 404

    deleted = client.delete_lut(second.id)

    assert deleted.removed == {
        "luts": 1,
        "lut_kernels": kernels,
        "jobs": kernels,
        "measurements": 1,
        "op_measurements": 1,
    }
    assert client.jobs() == [] and client.measurements() == []
    assert client.luts() == []
    # the micro-models stay, used by nothing now: deleted as models
    assert client.delete_model(micro_model).removed["models"] == 1


# --------------------------------------------------------------------------- predictors


def lut_artifact(intercept_us: float) -> bytes:
    """A LUT model as a predictor artifact (no torch needed): one op type's line."""
    fit = TypeFit(op_type="Conv", intercept_us=intercept_us, us_per_mflop=1.0, us_per_mb=0, n=3)
    table = LookupTable("onnxruntime", TableSource.measured_ops, {}, fallback={"Conv": fit})
    return to_artifact(LutModel(table))


def test_a_predictor_delete_makes_the_version_before_it_current_and_frees_its_blobs(
    client: Client, server_on_both: EmbeddedServer
) -> None:
    [device_id] = client.import_dataset(
        [("d.csv", f"space,arch,device,latency_ms\nnb201,{ARCHS[0]},d,2.0\n".encode())], "d"
    ).device_ids
    a, b = lut_artifact(5.0), lut_artifact(7.0)

    def upload(artifact: bytes, plot_png: bytes | None = None, current: bool = True) -> str:
        return client.upload_predictor(
            artifact,
            device_id=device_id,
            runtime="onnxruntime",
            space=None,
            plot_png=plot_png,
            current=current,
        ).id

    v1 = upload(a, plot_png=PNG)
    v2 = upload(b)
    v3 = upload(a, current=False)  # the same bytes as v1: one blob for both
    blob_a, blob_b, plot = (
        blob_path(server_on_both, hashlib.sha256(x).hexdigest()) for x in (a, b, PNG)
    )
    assert blob_a.exists() and blob_b.exists() and plot.exists()

    deleted = client.delete_predictor(v2)  # the current one: v1 serves again

    assert deleted.kind == "predictor" and deleted.current_predictor == v1
    assert deleted.removed == {"predictors": 1, "blobs": 1}
    assert deleted.changed == {"predictors_made_current": 1}
    assert client.predictor(v1).current and not blob_b.exists()

    deleted = client.delete_predictor(v1)  # current, none older: none is current

    assert deleted.current_predictor is None and deleted.changed == {"predictors_made_current": 0}
    assert deleted.removed == {"predictors": 1, "blobs": 1}  # the plot; v3 names the artifact
    assert blob_a.exists() and not plot.exists()
    assert not client.predictor(v3).current

    deleted = client.delete_predictor(v3)

    assert deleted.removed == {"predictors": 1, "blobs": 1} and deleted.current_predictor is None
    assert not blob_a.exists() and client.predictors() == []
    assert refused(lambda: client.delete_predictor(v3)).status == 404


# --------------------------------------------------------------------------- models


def test_a_model_delete_takes_its_jobs_measurements_op_rows_and_file(
    client: Client, agent: tuple[AgentClient, str], server_on_both: EmbeddedServer
) -> None:
    agent_client, device_id = agent
    model = client.upload_model("m.onnx", data=cnn_bytes(seed=2))
    other = client.upload_model("o.onnx", data=cnn_bytes(seed=3))
    client.create_job(model.id, device_id=device_id)
    client.create_job(model.id, device_id=device_id, config=OnnxRuntimeConfig(threads=2))
    client.create_job(other.id, device_id=device_id)
    measure_next(agent_client)
    claim = agent_client.claim(wait_s=0)  # the second: leased when the model goes
    assert claim is not None
    assert blob_path(server_on_both, model.id).exists()

    deleted = client.delete_model(model.id)

    assert deleted.kind == "model" and deleted.removed == {
        "models": 1,
        "jobs": 2,
        "measurements": 1,
        "op_measurements": 1,
        "dataset_entries": 0,
        "lut_kernels": 0,
        "blobs": 1,
    }
    assert deleted.changed == {"dataset_archs_unprepared": 0}
    assert not blob_path(server_on_both, model.id).exists()
    assert refused(lambda: client.model(model.id)).status == 404
    assert [j.model_id for j in client.jobs()] == [other.id] and client.measurements() == []
    # the agent timing the leased one learns at its next call
    err = refused(lambda: agent_client.upload_result(claim.job_id, result_for(claim)))
    assert err.status == 404
    assert blob_path(server_on_both, other.id).exists()


def test_a_model_a_dataset_uses_is_refused_unless_forced(
    client: Client, agent: tuple[AgentClient, str], server_on_both: EmbeddedServer
) -> None:
    agent_client, device_id = agent
    dataset = campaign(client, device_id, ARCHS[:2], "uses-it")
    measure_next(agent_client)
    [first, _] = client.jobs()
    model_id = first.model_id

    err = refused(lambda: client.delete_model(model_id))

    assert err.status == 409 and f"1 dataset: {dataset} ('uses-it')" in err.message
    assert "force=true" in err.message and client.model(model_id).id == model_id

    deleted = client.delete_model(model_id, force=True)

    assert deleted.removed == {
        "models": 1,
        "jobs": 1,
        "measurements": 1,
        "op_measurements": 1,
        "dataset_entries": 1,
        "lut_kernels": 0,
        "blobs": 1,
    }
    assert deleted.changed == {"dataset_archs_unprepared": 1}
    assert not blob_path(server_on_both, model_id).exists()
    progress = client.dataset(dataset).progress
    assert (progress.archs, progress.prepared, progress.unprepared) == (2, 1, 1)
    assert (progress.done, progress.failed, progress.pending) == (0, 1, 1)


def test_the_canary_model_is_never_deleted(tmp_path: Path, db_url: str) -> None:
    settings = make_settings(tmp_path, db_url, canary_every_jobs=5)
    with EmbeddedServer(settings) as server, Client(server.url, API_KEY) as client:
        [canary] = [m for m in client.models() if m.filename.startswith("canary-")]
        for force in (False, True):
            err = refused(lambda force=force: client.delete_model(canary.id, force=force))
            assert err.status == 409 and "canary's reference model" in err.message
        assert client.model(canary.id).id == canary.id


# --------------------------------------------------------------------------- refusals


def test_an_unknown_id_is_not_found_and_a_read_only_key_is_forbidden(
    client: Client, server_on_both: EmbeddedServer
) -> None:
    model = client.upload_model("m.onnx", data=cnn_bytes(seed=4))
    calls = {
        "dataset": Client.delete_dataset,
        "LUT": Client.delete_lut,
        "predictor": Client.delete_predictor,
        "model": Client.delete_model,
    }
    for what, call in calls.items():
        err = refused(lambda call=call: call(client, "nope"))
        assert err.status == 404 and err.message == f"no {what} 'nope'"
    with Client(server_on_both.url, READ_API_KEY) as reader:
        for call in calls.values():
            err = refused(lambda call=call: call(reader, model.id))
            assert err.status == 403 and "read-only" in err.message
    assert client.model(model.id).id == model.id
