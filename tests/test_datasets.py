"""Dataset campaigns: NB201 archs measured by a real local agent, exported in every format."""

from __future__ import annotations

import csv
import io
import json
import pickle
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from latlab.client import Client
from latlab.errors import ApiError
from latlab.quality import Verdict
from latlab.runtimes.onnxruntime import OnnxRuntimeConfig
from latlab.schemas import DatasetCreate, DatasetFormat, JobState
from latlab.server.embedded import EmbeddedServer
from latlab.spaces import GraphForm, get_space
from latlab.spaces.nb201 import Nb201
from tests.factories import register, wait_for
from tests.test_e2e import RunningAgent, start_agent

FAST = OnnxRuntimeConfig(
    protocol="fixed", warmup_runs=1, warmup_s=0, timed_runs=5, timed_s=0, profile_runs=1
)
SPACE = Nb201()


@pytest.fixture
def agent(live_server: EmbeddedServer, tmp_path: Path) -> Iterator[RunningAgent]:
    running = start_agent(live_server.url, tmp_path, name="cpu-0")
    yield running
    running.close()


def unzip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_a_campaign_of_20_nb201_archs_is_measured_and_exports_in_every_format(
    client: Client, agent: RunningAgent
) -> None:
    device = client.devices()[0]
    created = client.create_dataset(
        DatasetCreate(
            name="nb201-cpu", space="nb201", n=20, seed=1, device_ids=[device.id], config=FAST
        )
    )
    assert created.state == "preparing" and created.progress.archs == 20
    done = client.wait_dataset(created.id, timeout_s=300)
    assert done.progress.done == 20 and done.progress.failed == 0 and done.state == "done"

    by_arch = csv_latencies(client, done.id)
    assert set(by_arch) == {a.string for a in SPACE.sample(20, seed=1)}

    exports = {fmt: client.export_dataset(done.id, fmt) for fmt in DatasetFormat}
    files = unzip(exports[DatasetFormat.latbench])
    table = pickle.loads(files["cpu-0.pickle"])
    assert {SPACE.from_vector(v).string: s * 1000 for v, s in table.items()} == pytest.approx(
        by_arch, rel=1e-12
    )
    assert "README.md" in files

    as_json = json.loads(unzip(exports[DatasetFormat.json])["cpu-0.json"])
    assert len(as_json) == 20

    import pyarrow.parquet as pq

    tables = unzip(exports[DatasetFormat.parquet])
    measurements = pq.read_table(io.BytesIO(tables["measurements.parquet"])).to_pylist()
    assert {m["arch"]: m["median_ms"] for m in measurements} == by_arch
    assert all(len(m["samples_ms"]) == m["n"] >= 5 for m in measurements)
    # each row says where it was timed and what else ran there (unpinned here)
    assert all("load_1m" in json.loads(m["provenance"])["host"] for m in measurements)
    # and how far to trust it: the verdict the API answers, the median inside its interval
    answered = {m.id: m.quality for m in client.measurements(device_id=device.id, limit=100)}
    for m in measurements:
        assert m["verdict"] == answered[m["measurement_id"]].verdict
        assert m["verdict"] in {v.value for v in Verdict}
        assert m["ci_low_ms"] <= m["median_ms"] <= m["ci_high_ms"]
    csv_rows = list(csv.DictReader(io.StringIO(exports[DatasetFormat.csv].decode())))
    assert {r["verdict"] for r in csv_rows} == {m["verdict"] for m in measurements}
    assert (
        b"## Quality" in tables["README.md"]
        and b"assessed measurements are `ok`" in tables["README.md"]
    )
    ops = pq.read_table(io.BytesIO(tables["op_measurements.parquet"])).to_pylist()
    assert ops and {o["measurement_id"] for o in ops} == {m["measurement_id"] for m in measurements}
    assert b"CC BY 4.0" in tables["README.md"] and b"milliseconds" in tables["README.md"]
    assert json.loads(tables["dataset.json"])["space"] == "nb201"

    # every export imports back to the same numbers, marked as imported
    for fmt, data in exports.items():
        name = "export.csv" if fmt == DatasetFormat.csv else f"export-{fmt.value}.zip"
        back = client.import_dataset([(name, data)], f"back-{fmt.value}")
        assert back.source == "imported" and back.state == "ready", fmt
        assert back.progress.archs == 20 and back.progress.done == 20, fmt
        assert csv_latencies(client, back.id) == pytest.approx(by_arch, rel=1e-12), fmt
        [imported_device] = back.device_ids
        assert client.device(imported_device).source == "imported"
        assert client.device(imported_device).name == device.name


def csv_latencies(client: Client, dataset_id: str) -> dict[str, float]:
    """arch string -> latency_ms, read from the dataset's CSV export."""
    text = client.export_dataset(dataset_id, DatasetFormat.csv).decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len({r["device"] for r in rows}) == 1
    return {r["arch"]: float(r["latency_ms"]) for r in rows}


def test_campaigns_share_identical_models_and_pending_jobs(
    client: Client, live_server: EmbeddedServer
) -> None:
    agent_client, reg = register(live_server.url)  # registered, but not working: jobs stay queued
    with agent_client:
        archs = [
            "0,0,0,0,0,1",
            "|skip_connect~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|",
            "7",
        ]
        first = client.create_dataset(
            DatasetCreate(
                name="a", space="nb201", archs=archs, device_ids=[reg.device_id], config=FAST
            )
        )
        second = client.create_dataset(
            DatasetCreate(
                name="b", space="nb201", archs=archs[:2], device_ids=[reg.device_id], config=FAST
            )
        )
        wait_for(lambda: client.dataset(first.id).progress.prepared == 3)
        wait_for(lambda: client.dataset(second.id).state == "measuring")
        assert len(client.models()) == 3  # the second campaign's models are the first one's
        assert len(client.jobs(state=JobState.queued)) == 3  # identical pending jobs are shared
        assert client.dataset(second.id).progress.pending == 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"space": "nasbench101", "n": 3}, "unknown search space"),
        ({"space": "nb201", "archs": ["|nor_conv_9x9~0|"]}, "NAS-Bench-201"),
        ({"space": "nb201", "archs": [15625]}, "out of range"),
        ({"space": "nb201"}, "give archs"),
        ({"space": "nb201", "n": 3, "selector": {}}, "selector is empty"),
        ({"space": "nb201", "n": 3, "selector": {"cpu_arch": "riscv"}}, "no registered device"),
        ({"space": "nb201", "n": 3, "device_ids": ["nope"]}, "no device"),
    ],
)
def test_a_bad_campaign_is_refused_and_nothing_is_stored(
    client: Client, live_server: EmbeddedServer, body: dict, message: str
) -> None:
    agent_client, reg = register(live_server.url)
    agent_client.close()
    if "selector" not in body and "device_ids" not in body:
        body = {**body, "device_ids": [reg.device_id]}
    with pytest.raises(ApiError) as err:
        client.create_dataset(DatasetCreate(name="bad", **body))
    assert 400 <= err.value.status < 500 and message in err.value.message
    assert client.datasets() == [] and client.models() == [] and client.jobs() == []


#: node 2 is fed by nothing: the pruned form drops the conv on 3<-2, the eager form computes it
DEAD_CONV = "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"


def test_a_campaign_records_its_graph_form_and_exports_the_archs_in_it(
    client: Client, live_server: EmbeddedServer
) -> None:
    agent_client, reg = register(live_server.url)  # jobs stay queued: only the export matters
    with agent_client:
        made = {
            form: client.create_dataset(
                DatasetCreate(
                    name=form,
                    space="nb201",
                    archs=[DEAD_CONV],
                    device_ids=[reg.device_id],
                    config=FAST,
                    form=form,
                )
            )
            for form in GraphForm
        }
        for form, dataset in made.items():
            assert dataset.form == form
            wait_for(lambda d=dataset: client.dataset(d.id).state == "measuring")
        arch = SPACE.parse(DEAD_CONV)
        nodes = {m.filename: m.summary.n_nodes for m in client.models()}
        assert nodes == {
            f"nb201-{arch.index}.onnx": len(SPACE.graph(arch, GraphForm.pruned).nodes),
            f"nb201-{arch.index}-eager.onnx": len(SPACE.graph(arch, GraphForm.eager).nodes),
        }

        exported = client.export_dataset(made[GraphForm.eager].id, DatasetFormat.parquet)
        metadata = json.loads(unzip(exported)["dataset.json"])
        assert metadata["form"] == "eager"
        assert "NAS-Bench-201's own index" in metadata["index"]
        assert b"Graph form measured: `eager`" in unzip(exported)["README.md"]


def test_an_import_records_the_form_it_is_told_or_unknown(client: Client) -> None:
    rows = "space,arch,device,latency_ms\nnb201,1,board,2.5\nnb201,2,board,3.0\n"
    unknown = client.import_dataset([("a.csv", rows.encode())], "a")
    eager = client.import_dataset(
        [("b.csv", rows.replace("board", "board-2").encode())], "b", form=GraphForm.eager
    )
    assert unknown.form is None and eager.form == GraphForm.eager
    exported = client.export_dataset(eager.id, DatasetFormat.parquet)
    back = client.import_dataset([("e.zip", exported)], "back")
    assert back.form == GraphForm.eager  # a latlab export says its form itself
    with pytest.raises(ApiError, match="several graph forms"):
        client.import_dataset([("e.zip", exported)], "clash", form=GraphForm.pruned)
    assert [d.name for d in client.datasets()] == ["a", "b", "back"]


@pytest.mark.slow
@pytest.mark.parametrize("space_name", ["fbnet", "ofa"])
def test_a_campaign_measures_a_published_space_and_exports_the_published_keys(
    client: Client, agent: RunningAgent, space_name: str
) -> None:
    """HELP's spaces: their archs measured, exported as LatBench pickles keyed by the arch's
    vector (FBNet's op indices; OFA's resolution, depths, kernels and expansions) and read back
    by the importer."""
    [device] = client.devices()
    created = client.create_dataset(
        DatasetCreate(
            name=space_name, space=space_name, n=2, seed=2, device_ids=[device.id], config=FAST
        )
    )
    done = client.wait_dataset(created.id, timeout_s=300)
    assert done.state == "done" and done.progress.done == 2, done
    space = get_space(space_name)
    archs = space.sample(2, seed=2)
    table = pickle.loads(
        unzip(client.export_dataset(done.id, DatasetFormat.latbench))["cpu-0.pickle"]
    )
    assert set(table) == {a.vector for a in archs}
    assert all(0 < s < 1 for s in table.values())  # seconds
    again = client.import_dataset(
        [("again.pickle", pickle.dumps(table))], "again", space=space_name
    )
    assert {r["arch"] for r in client.dataset_rows(again.id)} == {a.string for a in archs}
