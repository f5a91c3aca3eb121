"""Importing published latencies (the 13 real LatBench devices), CSV and latlab's own exports;
bad files are refused whole."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import pytest
from hypothesis import given, settings

from latlab.client import Client
from latlab.datasets.dump import DatasetDump, DeviceRow
from latlab.datasets.latbench import DatasetFileError, read_latbench_pickle
from latlab.datasets.reader import read_import
from latlab.datasets.tables import write_csv
from latlab.errors import ApiError
from latlab.schemas import UNKNOWN_RUNTIME, DatasetFormat
from latlab.server.embedded import EmbeddedServer
from tests.factories import API_KEY, SHARED, make_settings, shared_path
from tests.strategies import csv_datasets

LATBENCH = SHARED / "data" / "latbench"
I7 = LATBENCH / "desktop-cpu-core-i7-7820x-fp32.pickle"
A53 = LATBENCH / "mobile-cpu-snapdragon-450-cortex-a53-int8.pickle"


def latbench_files() -> list[Path]:
    return sorted(shared_path("data/latbench").glob("*.pickle"))


def unzip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def nothing_stored(client: Client) -> bool:
    return client.datasets() == [] and client.devices() == []


@pytest.mark.slow
def test_the_13_latbench_devices_import_and_export_back_unchanged(client: Client) -> None:
    files = latbench_files()
    assert len(files) == 13
    dataset = client.import_dataset(files, "latbench", note="BRP-NAS/Eagle, Apache-2.0")
    originals = {f.stem: pickle.loads(f.read_bytes()) for f in files}
    assert dataset.space == "nb201" and dataset.source == "imported" and dataset.state == "ready"
    assert dataset.progress.devices == 13 and dataset.progress.pending == 0
    assert dataset.progress.done == sum(len(t) for t in originals.values())
    # 15,284 connected cells; some phone files lack a few more
    assert dataset.progress.archs == max(len(t) for t in originals.values()) == 15_284

    exported = unzip(client.export_dataset(dataset.id, DatasetFormat.latbench))
    for stem, original in originals.items():
        back = read_latbench_pickle(exported[f"{stem}.pickle"], stem)
        assert back == original  # the published seconds, exactly
        assert list(back) == list(original)  # in the file's own order
        assert pickle.loads(exported[f"{stem}.pickle"]) == original  # the plain reader too
    devices = {d.name: d for d in client.devices()}
    assert set(devices) == set(originals)
    assert all(d.source == "imported" and not d.online for d in devices.values())


def test_a_latbench_import_on_both_databases_is_queryable_as_measurements(
    server_on_both: EmbeddedServer,
) -> None:
    latbench_files()
    with Client(server_on_both.url, API_KEY) as client:
        dataset = client.import_dataset([A53], "a53")
        [device_id] = dataset.device_ids
        rows = client.measurements(device_id=device_id, samples=True, limit=5)
        assert len(rows) == 5
        first = rows[0]
        assert first.source == "imported" and first.model_id is None and first.job_id is None
        assert first.samples_ms == [] and first.stats.n == 0 and first.config is None
        assert first.provenance is not None and first.provenance["file"] == A53.name
        table = pickle.loads(A53.read_bytes())
        assert first.stats.median_ms == pytest.approx(next(iter(table.values())) * 1000, rel=1e-12)
        assert client.dataset(dataset.id).progress.done == len(table)

        # a second import of the same device's file reuses the device
        again = client.import_dataset([A53], "a53 again")
        assert again.device_ids == [device_id]


def test_an_imported_device_runs_no_jobs(client: Client, model: object) -> None:
    latbench_files()
    dataset = client.import_dataset(
        [("i7.csv", b"space,arch,device,latency_ms\nnb201,7,i7,1.5\n")], "one"
    )
    with pytest.raises(ApiError) as err:
        client.create_job(model.id, device_id=dataset.device_ids[0])  # type: ignore[attr-defined]
    assert err.value.status == 422 and "imported" in err.value.message
    assert client.jobs() == []


def test_a_csv_import_keeps_runtime_and_orders_archs_as_given(client: Client) -> None:
    text = (
        "space,arch,device,latency_ms,runtime\n"
        "nb201,|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|,pixel,2.5,tflite\n"
        "nb201,3,pixel,1.25,tflite\n"
        "nb201,0,0,0,1,1,1,jetson,0.75,\n"
    )
    with pytest.raises(ApiError) as err:  # a vector needs quoting in CSV: 6 extra fields
        client.import_dataset([("a.csv", text.encode())], "csv")
    assert err.value.status == 422 and "line 4" in err.value.message

    text = text.replace("nb201,0,0,0,1,1,1,jetson", 'nb201,"0,0,0,1,1,1",jetson')
    dataset = client.import_dataset([("a.csv", text.encode())], "csv")
    assert dataset.progress.archs == 3 and dataset.progress.devices == 2
    rows = client.export_dataset(dataset.id, DatasetFormat.csv).decode().splitlines()
    # no percentiles, no verdict, no canary
    assert rows[1].endswith("2.5,tflite,imported,0,,,,,,,,,")
    pixel = next(d for d in dataset.device_ids if client.device(d).name == "pixel")
    assert f",3,pixel,{pixel},1.25,tflite," in rows[2]


def test_an_import_lists_each_device_with_its_rows_and_whether_it_created_it(
    client: Client,
) -> None:
    text = (
        b"space,arch,device,latency_ms\nnb201,1,pixel,1.5\nnb201,2,pixel,1.6\nnb201,1,jetson,0.5\n"
    )
    first = client.import_dataset([("a.csv", text)], "first")
    assert first.provenance is not None
    listed = first.provenance["import_devices"]
    assert [(d["name"], d["rows"], d["created"]) for d in listed] == [
        ("pixel", 2, True),
        ("jetson", 1, True),
    ]
    assert sorted(d["id"] for d in listed) == sorted(first.device_ids)

    again = client.import_dataset([("b.csv", text.replace(b"jetson", b"orin"))], "again")
    assert again.provenance is not None
    assert [(d["name"], d["created"]) for d in again.provenance["import_devices"]] == [
        ("pixel", False),  # reused by name
        ("orin", True),
    ]
    assert again.provenance["import_devices"][0]["id"] == listed[0]["id"]


def test_rows_without_a_runtime_get_the_imports_runtime_else_unknown(client: Client) -> None:
    text = (
        b"space,arch,device,latency_ms,runtime\n"
        b"nb201,1,pixel,1.5,\n"
        b"nb201,2,pixel,1.6,tflite 2.16 xnnpack\n"
    )
    said = client.import_dataset([("a.csv", text)], "said", runtime="tflite 2.14 gpu")
    assert said.provenance is not None and said.provenance["runtime"] == "tflite 2.14 gpu"
    [device] = said.provenance["import_devices"]
    assert device["runtimes"] == ["tflite 2.14 gpu", "tflite 2.16 xnnpack"]  # a row's own wins
    rows = client.measurements(device_id="pixel")
    assert [m.runtime for m in rows] == ["tflite 2.14 gpu", "tflite 2.16 xnnpack"]

    latbench = [("jetson.json", b'{"0,0,0,0,0,1": 0.001}')]  # LatBench names no runtime
    unsaid = client.import_dataset(latbench, "unsaid")
    assert unsaid.provenance is not None and unsaid.provenance["runtime"] is None
    assert unsaid.provenance["import_devices"][0]["runtimes"] == [UNKNOWN_RUNTIME]
    assert [m.runtime for m in client.measurements(device_id="jetson")] == ["unknown"]


HOSTILE_PICKLE = b"cos\nsystem\n(S'echo pwned'\ntR."


@pytest.mark.parametrize(
    ("files", "form", "status", "message"),
    [
        ([("x.pickle", I7.read_bytes()[:1000] if I7.exists() else b"\x80")], {}, 422, "x.pickle"),
        ([("evil.pickle", HOSTILE_PICKLE)], {}, 422, "not allowed"),
        ([("list.pickle", pickle.dumps([1, 2]))], {}, 422, "expected a non-empty dict"),
        ([("neg.pickle", pickle.dumps({(0,) * 6: -1.0}))], {}, 422, "positive"),
        ([("bad.pickle", pickle.dumps({(9, 9, 9, 9, 9, 9): 0.1}))], {}, 422, "NAS-Bench-201"),
        ([("short.pickle", pickle.dumps({(1, 2): 0.1}))], {}, 422, "NAS-Bench-201"),
        ([("x.json", b"{not json")], {}, 422, "not a LatBench JSON"),
        ([("x.csv", b"space,arch,latency_ms\nnb201,1,2\n")], {}, 422, "lacks device"),
        ([("x.csv", b"space,arch,device,latency_ms\nnb201,1,d,fast\n")], {}, 422, "line 2"),
        ([("x.csv", b"space,arch,device,latency_ms\nnb201,99999,d,1\n")], {}, 422, "range"),
        (
            [("x.csv", b"space,arch,device,latency_ms\nnb201,1,d,1\nnb201,1,d,2\n")],
            {},
            422,
            "twice",
        ),
        ([("x.csv", b"space,arch,device,latency_ms\nnb999,1,d,1\n")], {}, 422, "unknown search"),
        ([("x.csv", b"space,arch,device,latency_ms\n")], {}, 422, "no rows under"),
        (
            [("x.csv", b"space,arch,device,latency_ms,runtime\nnb201,1,d,1," + b"r" * 101)],
            {},
            422,
            "longer than 100",
        ),
        ([("x.csv", b"\xff\xfe\x00bad")], {}, 422, "UTF-8"),
        (
            [("x.csv", b"space,arch,device,latency_ms\nnb201,1,d,1\n")],
            {"space": "proxyless"},
            422,
            "several spaces",
        ),
        ([("x.txt", b"hello")], {}, 422, "unknown file type"),
        ([("x.zip", b"PK\x03\x04 broken")], {}, 422, "zip"),
        ([("x.csv", b"")], {}, 400, "empty"),
    ],
)
def test_a_bad_import_is_refused_and_nothing_is_stored(
    client: Client, files: list[tuple[str, bytes]], form: dict[str, str], status: int, message: str
) -> None:
    good = ("good-device.json", b'{"0,0,0,0,0,1": 0.001}')  # names no space
    with pytest.raises(ApiError) as err:
        client.import_dataset([good, *files], "bad", **form)
    assert err.value.status == status and message in err.value.message
    assert nothing_stored(client)


def test_an_import_over_the_size_limit_is_refused(tmp_path: Path, sqlite_url: str) -> None:
    settings = make_settings(tmp_path, sqlite_url, max_import_bytes=10_000)
    with EmbeddedServer(settings) as server, Client(server.url, API_KEY) as client:
        big = b"space,arch,device,latency_ms\n" + b"nb201,1,d,1\n" * 2000
        with pytest.raises(ApiError) as err:
            client.import_dataset([("big.csv", big)], "big")
        assert err.value.status == 413
        assert nothing_stored(client)


# --------------------------------------------------------------------------- the reader


@settings(max_examples=60, deadline=None)
@given(csv_datasets())
def test_a_csv_export_reads_back_to_the_same_rows(dump: DatasetDump) -> None:
    table = read_import(write_csv(dump).items())
    names = {d.id: d.name for d in dump.devices}
    assert [(r.arch, r.device, r.latency_ms, r.runtime) for r in table.rows] == [
        (m.arch, names[m.device_id], m.latency_ms, m.runtime) for m in dump.measurements
    ]
    assert table.spaces == {dump.space}


def test_an_archive_of_files_reads_like_the_files() -> None:
    latbench_files()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README.md", "ignored")
        archive.writestr("sub/i7.pickle", I7.read_bytes())
    table = read_import([("bundle.zip", buffer.getvalue())])
    plain = read_import([("i7.pickle", I7.read_bytes())])
    assert [(r.arch, r.device, r.latency_s) for r in table.rows] == [
        (r.arch, r.device, r.latency_s) for r in plain.rows
    ]
    assert table.rows[0].file == "bundle.zip:sub/i7.pickle"


@pytest.mark.slow
def test_a_zip_bomb_is_refused_before_it_is_unpacked() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("huge.csv", b"0" * (1 << 30) + b"1")
    with pytest.raises(DatasetFileError, match="unpacks to more than"):
        read_import([("bomb.zip", buffer.getvalue())])


def test_device_names_become_unique_file_names() -> None:
    dump = DatasetDump(
        id="d",
        name="n",
        space="nb201",
        space_params={},
        source="campaign",
        config=None,
        provenance=None,
        archs=[],
        devices=[DeviceRow("a" * 32, "pixel 7/a", {}), DeviceRow("b" * 32, "pixel 7 a", {})],
        measurements=[],
    )
    assert dump.device_files() == {"a" * 32: "pixel-7-a", "b" * 32: "pixel-7-a-bbbbbbbb"}
