"""The ``latlab`` command: thin verbs over the client; exit 1 operational, 2 usage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from latlab.client import Client
from latlab.latency_model import to_artifact
from latlab.runtimes.onnxruntime import OnnxRuntimeConfig
from latlab.schemas import JobState
from latlab.server.embedded import EmbeddedServer, free_port
from tests.factories import API_KEY, READ_API_KEY, cnn_bytes, register, shared_path

LATLAB = str(Path(sys.executable).with_name("latlab"))


def latlab(*args: str, url: str, key: str | None = API_KEY) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LATLAB_SERVER_URL": url}
    env.pop("LATLAB_API_KEY", None)
    if key is not None:
        env["LATLAB_API_KEY"] = key
    return subprocess.run([LATLAB, *args], capture_output=True, text=True, env=env, timeout=60)


def test_upload_then_create_and_list_a_job(
    live_server: EmbeddedServer, client: Client, tmp_path: Path
) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(cnn_bytes())
    uploaded = latlab("models", "upload", str(path), url=live_server.url)
    assert uploaded.returncode == 0, uploaded.stderr
    model_id = uploaded.stdout.split()[0]
    assert client.model(model_id).filename == "m.onnx"

    created = latlab(
        "jobs",
        "create",
        "--model",
        model_id,
        "--selector",
        "cpu_arch=x86_64",
        "--threads",
        "1",
        "--runs",
        "20",
        "--no-profile",
        "--deadline-s",
        "90",
        url=live_server.url,
    )
    assert created.returncode == 0, created.stderr
    job_id = created.stdout.split()[0]
    job = client.job(job_id)
    assert job.state == JobState.queued and job.selector == {"cpu_arch": "x86_64"}
    assert job.config.timed_runs == 20 and not job.config.profile_ops
    assert job.config.deadline_s == 90

    listed = latlab("jobs", "list", url=live_server.url)
    assert listed.returncode == 0 and job_id in listed.stdout

    waited = latlab("jobs", "wait", job_id, "--timeout", "0.2", url=live_server.url)
    assert waited.returncode == 1 and "not finished" in waited.stderr


def test_a_refused_upload_exits_1_with_the_servers_message(
    live_server: EmbeddedServer, tmp_path: Path
) -> None:
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"not a model at all" * 10)
    result = latlab("models", "upload", str(path), url=live_server.url)
    assert result.returncode == 1
    assert "422" in result.stderr and "ONNX" in result.stderr


def test_usage_errors_exit_2(live_server: EmbeddedServer) -> None:
    assert latlab("jobs", "create", url=live_server.url).returncode == 2  # --model missing
    no_target = latlab("jobs", "create", "--model", "0" * 64, url=live_server.url)
    assert no_target.returncode == 2 and "--device" in no_target.stderr
    no_key = latlab("jobs", "list", url=live_server.url, key=None)
    assert no_key.returncode == 2 and "API key" in no_key.stderr
    gpu_delegate_on_ort = latlab(
        "jobs", "create", "--model", "0" * 64, "--selector", "--gpu-delegate", url=live_server.url
    )
    assert gpu_delegate_on_ort.returncode == 2
    assert "--gpu-delegate is not a setting of onnxruntime" in gpu_delegate_on_ort.stderr


def test_runtimes_lists_every_registered_runtime_with_its_own_settings() -> None:
    listed = latlab("runtimes", url="http://127.0.0.1:9")  # needs no server
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line for line in listed.stdout.splitlines()[1:4]}
    assert set(rows) == {"onnxruntime", "litert", "benchmark_model"}
    assert "graph_optimization=all" in rows["onnxruntime"] and " yes " in rows["onnxruntime"]
    assert "xnnpack=True" in rows["litert"] and " adb " in rows["benchmark_model"]


def test_an_unreachable_server_exits_1() -> None:
    result = latlab("jobs", "list", url=f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 1 and "unreachable" in result.stderr


def test_a_server_whose_stores_do_not_answer_exits_1_with_the_reason(tmp_path: Path) -> None:
    dead = f"127.0.0.1:{free_port()}"
    for env, reason in [
        (
            {
                "LATLAB_S3_BUCKET": "latlab",
                "LATLAB_S3_ENDPOINT_URL": f"http://{dead}",
                "LATLAB_S3_ACCESS_KEY_ID": "k",
                "LATLAB_S3_SECRET_ACCESS_KEY": "s",
            },
            "the blob store does not answer",
        ),
        ({"LATLAB_DATABASE_URL": f"postgresql+psycopg://nobody@{dead}/x"}, "cannot be used"),
    ]:
        result = subprocess.run(
            [LATLAB, "server", "--port", str(free_port())],
            capture_output=True,
            text=True,
            env={**os.environ, "LATLAB_DATA_DIR": str(tmp_path), **env},
            timeout=120,
        )
        assert result.returncode == 1, result.stderr
        assert "the server cannot start" in result.stderr and reason in result.stderr
        assert "Traceback" not in result.stderr


def test_space_info_prints_the_size_and_an_example() -> None:
    result = subprocess.run([LATLAB, "space", "info", "nb201"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "15,625" in result.stdout and "|nor_conv_3x3~0|" in result.stdout


def test_space_export_writes_a_model_that_runs(tmp_path: Path) -> None:
    import numpy as np
    import onnxruntime as ort

    out = tmp_path / "a.onnx"
    result = subprocess.run(
        [LATLAB, "space", "export", "nb201", "3,3,4,1,3,1", "-o", str(out)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert sess.run(None, {"input": np.zeros((1, 3, 32, 32), np.float32)})[0].shape == (1, 10)


def test_space_export_of_a_bad_arch_or_space_is_a_clear_error(tmp_path: Path) -> None:
    for args in (["nb201", "99999"], ["nb201", "|conv~0|"], ["nasbench101", "0"]):
        result = subprocess.run(
            [LATLAB, "space", "export", *args, "-o", str(tmp_path / "x.onnx")],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 1 and result.stderr.startswith("latlab: error:")
        assert not (tmp_path / "x.onnx").exists()


def test_space_export_takes_the_format_from_the_outputs_suffix(tmp_path: Path) -> None:
    def export(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [LATLAB, "space", "export", "nb201", "1", *args], capture_output=True, text=True
        )

    out = tmp_path / "t.tflite"
    assert export("-o", str(out)).returncode == 0
    assert out.read_bytes()[4:8] == b"TFL3"  # a TFLite flatbuffer, not ONNX under its name
    clash = export("--format", "onnx", "-o", str(tmp_path / "u.tflite"))
    assert clash.returncode == 2 and "ends in .tflite" in clash.stderr
    unknown = export("-o", str(tmp_path / "model.bin"))
    assert unknown.returncode == 2 and "--format onnx|tflite" in unknown.stderr
    assert not (tmp_path / "u.tflite").exists() and not (tmp_path / "model.bin").exists()


def test_a_reader_that_stops_early_is_not_an_error() -> None:
    # `latlab runtimes | head -1`: the pipe closes before the command has written everything
    read, write = os.pipe()
    os.close(read)
    try:
        result = subprocess.run([LATLAB, "runtimes"], stdout=write, stderr=subprocess.PIPE)
    finally:
        os.close(write)
    assert result.returncode == 0 and result.stderr == b""


def test_waiting_for_a_job_that_does_not_exist_says_so(live_server: EmbeddedServer) -> None:
    # (it used to poll for the whole --timeout: the helper's own 60 s limit would end it)
    result = latlab("jobs", "wait", "0" * 32, "--timeout", "600", url=live_server.url)
    assert result.returncode == 1 and f"no job {'0' * 32}" in result.stderr


@pytest.mark.slow
def test_dataset_build_follow_export_and_import_back(
    live_server: EmbeddedServer, client: Client, tmp_path: Path
) -> None:
    from tests.test_e2e import start_agent

    agent = start_agent(live_server.url, tmp_path, name="cli-cpu")
    try:
        assert [d.name for d in client.devices()] == ["cli-cpu"]  # built by its name below
        fast = ["--warmup-runs", "1", "--warmup-s", "0", "--runs", "3", "--min-s", "0"]
        built = latlab(
            "dataset", "build", "--space", "nb201", "--n", "3", "--seed", "4",
            "--device", "cli-cpu", *fast, "--no-profile", "--name", "cli", "--wait",
            url=live_server.url,
        )  # fmt: skip
        assert built.returncode == 0, built.stderr
        assert "done=3 failed=0 pending=0" in built.stdout
        assert "3/3" in built.stderr  # the progress bar
        dataset_id = built.stdout.split()[0]

        listed = latlab("dataset", "status", url=live_server.url)
        assert listed.returncode == 0 and dataset_id in listed.stdout and "done" in listed.stdout

        out = tmp_path / "cli.csv"
        exported = latlab(
            "dataset", "export", dataset_id, "--format", "csv", "-o", str(out), url=live_server.url
        )
        assert exported.returncode == 0, exported.stderr
        assert len(out.read_text().splitlines()) == 4

        back = latlab("dataset", "import", str(out), "--name", "back", url=live_server.url)
        assert back.returncode == 0, back.stderr
        assert "imported ready" in back.stdout and "archs=3" in back.stdout
        [imported] = client.dataset(back.stdout.split()[0]).device_ids
        [line] = [row for row in back.stdout.splitlines() if row.startswith(imported)]
        assert line.split() == [imported, "cli-cpu", "3", "onnxruntime", "yes"]
        assert "note:" not in back.stderr  # the export names its runtime
    finally:
        agent.close()

    bad = tmp_path / "bad.csv"
    bad.write_text("space,arch,device\nnb201,1,d\n")
    refused = latlab("dataset", "import", str(bad), url=live_server.url)
    assert refused.returncode == 1 and "lacks latency_ms" in refused.stderr
    missing = latlab("dataset", "import", str(tmp_path / "nope.pickle"), url=live_server.url)
    assert missing.returncode == 1 and "nope.pickle" in missing.stderr
    no_archs = latlab("dataset", "build", "--space", "nb201", "--device", "x", url=live_server.url)
    assert no_archs.returncode == 2 and "--n" in no_archs.stderr


def test_dataset_import_lists_its_devices_and_records_the_runtime_it_is_told(
    live_server: EmbeddedServer, client: Client, tmp_path: Path
) -> None:
    published = tmp_path / "published.csv"
    published.write_text(
        "space,arch,device,latency_ms\nnb201,1,pixel7,2.5\nnb201,2,pixel7,2.75\nnb201,1,orin,0.5\n"
    )
    unsaid = latlab("dataset", "import", str(published), url=live_server.url)
    assert unsaid.returncode == 0, unsaid.stderr
    devices = {d.name: d.id for d in client.devices()}
    lines = unsaid.stdout.splitlines()
    assert lines[1].split() == ["device_id", "name", "rows", "runtime", "created"]
    assert [line.split() for line in lines[2:]] == [
        [devices["pixel7"], "pixel7", "2", "unknown", "yes"],
        [devices["orin"], "orin", "1", "unknown", "yes"],
    ]
    assert "stored as 'unknown'; say which with --runtime" in unsaid.stderr

    said = latlab(
        "dataset", "import", str(published), "--name", "said", "--runtime", "tflite-2.14",
        url=live_server.url,
    )  # fmt: skip
    assert said.returncode == 0, said.stderr
    assert "note:" not in said.stderr
    assert [line.split()[1:] for line in said.stdout.splitlines()[2:]] == [
        ["pixel7", "2", "tflite-2.14", "no", "(reused)"],
        ["orin", "1", "tflite-2.14", "no", "(reused)"],
    ]
    assert {m.runtime for m in client.measurements(device_id="pixel7")} == {
        "unknown",
        "tflite-2.14",
    }


@pytest.mark.slow
def test_predict_reads_an_archs_file_of_any_length_and_names_devices_by_name(
    live_server: EmbeddedServer, client: Client, tmp_path: Path
) -> None:
    from latlab.schemas import MAX_PREDICT_ITEMS
    from tests.test_predictors import random_predictor

    for name in ("phone", "board"):
        csv = f"space,arch,device,latency_ms\nnb201,1,{name},1.0\n".encode()
        [device_id] = client.import_dataset([(f"{name}.csv", csv)], name).device_ids
        client.upload_predictor(
            to_artifact(random_predictor()), device_id=device_id, runtime="unknown", space="nb201"
        )
    archs = [str(i) for i in range(MAX_PREDICT_ITEMS + 25)]
    archs_file = tmp_path / "archs.txt"
    archs_file.write_text(
        "# candidates of the search\n\n" + "\n".join(f"{a}  # index" for a in archs) + "\n"
    )

    one = latlab(
        "predict", "--device", "phone", "--archs-file", str(archs_file), "3,3,4,1,3,1",
        url=live_server.url,
    )  # fmt: skip
    assert one.returncode == 0, one.stderr
    lines = one.stdout.splitlines()
    assert lines[0].startswith(f"# device {client.device('phone').id}, predictor gcn")
    assert [line.split()[-1] for line in lines[1:]] == ["3,3,4,1,3,1", *archs]

    both = latlab(
        "predict", "--device", "phone", "--device", "board", "--archs-file", str(archs_file),
        "--json", url=live_server.url,
    )  # fmt: skip
    assert both.returncode == 0, both.stderr
    answers = json.loads(both.stdout)
    assert [a["device_id"] for a in answers] == [client.device(n).id for n in ("phone", "board")]
    assert all([p["item"] for p in a["predictions"]] == archs for a in answers)

    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing yet\n")
    usage = latlab("predict", "--device", "phone", "--archs-file", str(empty), url=live_server.url)
    assert usage.returncode == 2 and "--archs-file" in usage.stderr
    missing = latlab("predict", "--device", "tablet", "1", url=live_server.url)
    assert missing.returncode == 1 and "no device 'tablet'" in missing.stderr
    assert "Traceback" not in missing.stderr


@pytest.mark.slow
def test_lut_build_show_export_and_predict(
    live_server: EmbeddedServer, client: Client, tmp_path: Path
) -> None:
    from latlab.schemas import DatasetCreate
    from tests.test_e2e import start_agent

    agent = start_agent(live_server.url, tmp_path, name="cli-lut")
    try:
        device = client.devices()[0]
        fast = OnnxRuntimeConfig(
            protocol="fixed", warmup_runs=1, warmup_s=0, timed_runs=3, timed_s=0, profile_runs=2
        )
        body = DatasetCreate(name="d", space="nb201", n=3, device_ids=[device.id], config=fast)
        client.wait_dataset(client.create_dataset(body).id, timeout_s=120)
    finally:
        agent.close()

    built = latlab(
        "lut", "build", "--device", device.id, "--source", "measured-ops", "--wait",
        url=live_server.url,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    assert "measured-ops ready" in built.stdout and "3 models" in built.stdout
    lut_id = built.stdout.split()[0]

    shown = latlab("lut", "show", url=live_server.url)
    assert shown.returncode == 0 and lut_id in shown.stdout

    exported = latlab("lut", "export", lut_id, "--format", "yaml", url=live_server.url)
    assert exported.returncode == 0 and "count:" in exported.stdout and "mean:" in exported.stdout

    predicted = latlab(
        "lut", "predict", "--device", device.id, "11791", "3,3,4,1,3,1", url=live_server.url
    )
    assert predicted.returncode == 0, predicted.stderr
    lines = [line for line in predicted.stdout.splitlines() if not line.startswith("#")]
    assert len(lines) == 2 and all(float(line.split()[0]) > 0 for line in lines)

    bad = latlab("lut", "predict", "--device", device.id, "|bad~0|", url=live_server.url)
    assert bad.returncode == 1 and "NAS-Bench-201" in bad.stderr
    usage = latlab("lut", "build", "--device", device.id, url=live_server.url)
    assert usage.returncode == 2 and "--space" in usage.stderr


@pytest.mark.slow
def test_train_registers_a_predictor_that_predict_then_uses(
    live_server: EmbeddedServer, client: Client, tmp_path: Path
) -> None:
    import pickle

    table = pickle.loads(shared_path("data/latbench/embedded-tpu-edgetpu-int8.pickle").read_bytes())
    rows = "".join(
        f'nb201,"{",".join(map(str, v))}",tpu,{float(s) * 1e3!r}\n'
        for v, s in list(table.items())[:120]
    )
    dataset = client.import_dataset(
        [("tpu.csv", ("space,arch,device,latency_ms\n" + rows).encode())], "tpu"
    )
    [device_id] = dataset.device_ids

    quick = ["--epochs", "5", "--hidden", "16", "--folds", "3"]
    trained = latlab(
        "train", "--device", "tpu", "--test", "12", *quick,  # by its name
        "-o", str(tmp_path / "p.npz"), "--plot", str(tmp_path / "p.png"), url=live_server.url,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    assert "held-out 12:" in trained.stdout and f"version 1 of {device_id} (tpu" in trained.stdout
    assert "trained on 108 of 120 nb201 archs (unknown form, latlab)" in trained.stdout
    served = trained.stdout.split("serves ")[1].split()[0]
    assert f"  {served} " in trained.stdout.split("best first:")[1]  # listed, first
    with_members = served == "gcn" or served.startswith("blend")
    assert (tmp_path / "p.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "p.npz").stat().st_size > 0

    predicted = latlab(
        "predict", "--device", device_id, "11791", "0,1,2,3,4,1", url=live_server.url
    )
    assert predicted.returncode == 0, predicted.stderr
    assert "predictor gcn" in predicted.stdout
    assert predicted.stdout.count(" ± ") == (2 if with_members else 0)  # the members' spread

    other = client.import_dataset(
        [
            (
                "tpu2.csv",
                ("space,arch,device,latency_ms\n" + rows.replace(",tpu,", ",tpu2,")).encode(),
            )
        ],
        "tpu2",
    ).device_ids[0]
    client.upload_predictor(
        (tmp_path / "p.npz").read_bytes(), device_id=other, runtime="unknown", space="nb201"
    )
    both = latlab("predict", "--device", device_id, "--device", other, "11791", url=live_server.url)
    assert both.returncode == 0, both.stderr
    assert [line.split()[2] for line in both.stdout.splitlines() if line.startswith("#")] == [
        f"{device_id},",
        f"{other},",
    ]
    twice = latlab("predict", "--device", other, "--device", other, "1", url=live_server.url)
    assert twice.returncode == 1 and "more than once" in twice.stderr

    listed = latlab("predictors", "--device", device_id, url=live_server.url)
    assert listed.returncode == 0 and "nb201" in listed.stdout and "*" in listed.stdout

    # one held-out arch: no rank correlation; printed as '-', never a crash
    single = latlab("train", "--device", "tpu", "--test", "1", *quick, url=live_server.url)
    assert single.returncode == 0, single.stderr
    assert "held-out 1:" in single.stdout and "rho -, tau -" in single.stdout
    listed = latlab("predictors", "--device", "tpu", url=live_server.url)
    assert listed.returncode == 0, listed.stderr
    [row] = [line.split() for line in listed.stdout.splitlines() if " 2 " in line]
    assert row[-1] == "-" and row[-2].endswith("%")

    missing = latlab("train", "--device", "nope", url=live_server.url)
    assert missing.returncode == 1 and "no device 'nope'" in missing.stderr


def test_devices_are_listed_and_revoked_only_with_a_read_write_key(
    live_server: EmbeddedServer, client: Client
) -> None:
    agent, registered = register(live_server.url, name="bench-phone")
    agent.close()
    listed = latlab("devices", "list", url=live_server.url, key=READ_API_KEY)
    assert listed.returncode == 0 and "bench-phone" in listed.stdout and "agent" in listed.stdout
    denied = latlab(
        "devices", "revoke", registered.device_id, url=live_server.url, key=READ_API_KEY
    )
    assert denied.returncode == 1 and "read-only" in denied.stderr
    revoked = latlab("devices", "revoke", registered.device_id, url=live_server.url)
    assert revoked.returncode == 0 and f"revoked {registered.device_id}" in revoked.stdout
    assert client.device(registered.device_id).online is False


@pytest.mark.parametrize(
    ("database_url", "says"),
    [
        ("postgresql+psycopg://postgres:hunter2@127.0.0.1:1/x", "database x at 127.0.0.1:1"),
        ("postgresql+psycopg://postgres:hunter2@nohost.invalid/x", "nohost.invalid"),
        ("mysql://u:hunter2@127.0.0.1/x", "driver is not installed"),
        ("not a url", "not a database URL"),
    ],
)
def test_a_server_that_cannot_use_its_database_says_so_in_one_line(
    tmp_path: Path, database_url: str, says: str
) -> None:
    env = {
        **os.environ,
        "LATLAB_DATA_DIR": str(tmp_path),
        "LATLAB_DATABASE_URL": database_url,
    }
    result = subprocess.run(
        [LATLAB, "server", "--port", "0"], capture_output=True, text=True, env=env, timeout=60
    )
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert result.returncode == 1, result.stderr
    assert len(errors) == 1 and says in errors[0], result.stderr
    assert "hunter2" not in result.stderr and "sqlalche.me" not in result.stderr
    assert "Traceback" not in result.stderr
