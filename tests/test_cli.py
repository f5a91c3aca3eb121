"""The ``latlab`` command: thin verbs over the client; exit 1 operational, 2 usage."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

import pytest

from latlab.client import Client
from latlab.latency_model import to_artifact
from latlab.runtimes.onnxruntime import OnnxRuntimeConfig
from latlab.schemas import JobState, ModelOut
from latlab.server.embedded import EmbeddedServer, free_port
from tests.factories import API_KEY, READ_API_KEY, cnn_bytes, register, shared_path

LATLAB = str(Path(sys.executable).with_name("latlab"))


#: A home with no profile and no local server's credentials (the real one may have both).
EMPTY_HOME = tempfile.mkdtemp(prefix="latlab-home-")


def latlab(
    *args: str,
    url: str | None,
    key: str | None = API_KEY,
    home: str | Path = EMPTY_HOME,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home)}
    for name in ("LATLAB_API_KEY", "LATLAB_SERVER_URL", "LATLAB_PROFILE", "LATLAB_DATA_DIR"):
        env.pop(name, None)
    if url is not None:
        env["LATLAB_SERVER_URL"] = url
    if key is not None:
        env["LATLAB_API_KEY"] = key
    return subprocess.run(
        [LATLAB, *args], capture_output=True, text=True, env=env, timeout=60, input=stdin
    )


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

    waited = latlab("jobs", "wait", job_id, "--timeout-s", "0.2", url=live_server.url)
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


def test_an_unreachable_server_says_which_and_what_to_check() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = latlab("jobs", "list", url=url)
    assert result.returncode == 1
    assert f"no answer from the server at {url}" in result.stderr and "Connection refused" in (
        result.stderr
    )
    assert "is `latlab server` running there?" in result.stderr
    assert "0 unreachable" not in result.stderr and "Traceback" not in result.stderr


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
    result = latlab("jobs", "wait", "0" * 32, "--timeout-s", "600", url=live_server.url)
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

    exported = latlab("lut", "export", lut_id, "--format", "yaml", "-o", "-", url=live_server.url)
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

    # the newest version deleted (by a prefix of its id): the one before is current again
    newest = max(client.predictors("tpu"), key=lambda p: p.version)
    deleted = latlab("predictors", "--delete", newest.id[:8], "--yes", url=live_server.url)
    assert deleted.returncode == 0, deleted.stderr
    assert f"deleted predictor {newest.id}: removed predictors 1" in deleted.stdout
    assert "current predictor now" in deleted.stdout
    assert [p.version for p in client.predictors("tpu") if p.current] == [newest.version - 1]


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


def test_usage_errors_show_the_commands_own_usage(live_server: EmbeddedServer) -> None:
    no_target = latlab("jobs", "create", "--model", "0" * 64, url=live_server.url)
    assert no_target.returncode == 2
    assert no_target.stderr.startswith("usage: latlab jobs create")
    assert "latlab jobs create: error: give --device ID" in no_target.stderr


def test_version_and_a_help_written_for_users() -> None:
    shown = latlab("--version", url=None)
    assert shown.returncode == 0 and shown.stdout.strip() == f"latlab {version('latlab')}"
    helped = latlab("--help", url=None)
    assert helped.returncode == 0
    for start in ("latlab quickstart", "latlab server", "latlab agent", "latlab login"):
        assert start in helped.stdout


@pytest.mark.parametrize(
    ("argv", "missing", "extras"),
    [
        (["quickstart"], "torch", "server,agent,train"),
        (["train", "--device", "x"], "torch", "train"),
        (["server"], "uvicorn", "server"),
    ],
)
def test_a_missing_extra_is_named_in_one_line_before_any_work(
    tmp_path: Path, argv: list[str], missing: str, extras: str
) -> None:
    # the module hidden as if it were not installed (an import of it raises ImportError)
    code = (
        f"import sys; sys.modules[{missing!r}] = None; "
        f"from latlab.cli import main; sys.exit(main({argv!r}))"
    )
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "LATLAB_DATA_DIR": str(tmp_path / "data"),
        "LATLAB_API_KEY": "k",
        "LATLAB_SERVER_URL": f"http://127.0.0.1:{free_port()}",
    }
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert result.returncode == 1
    assert result.stderr == (
        f"latlab: error: latlab {argv[0]} needs {missing}, not installed here: "
        f"pip install 'latlab[{extras}]'\n"
    )
    assert list(tmp_path.iterdir()) == []  # no quickstart folder, no keys, nothing measured


def test_the_quickstart_refuses_too_few_archs_before_it_measures(tmp_path: Path) -> None:
    result = latlab("quickstart", "--archs", "4", "--dir", str(tmp_path / "qs"), url=None)
    assert result.returncode == 2 and result.stderr.startswith("usage: latlab quickstart")
    assert "--archs: at least 8" in result.stderr
    assert not (tmp_path / "qs").exists()


def test_login_keeps_a_profile_that_the_other_commands_use(
    live_server: EmbeddedServer, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    wrong = latlab("login", "--server", live_server.url, url=None, key=None, home=home, stdin="x\n")
    assert wrong.returncode == 1 and "401" in wrong.stderr
    assert not (home / ".latlab").exists()  # a refused key is not kept

    kept = latlab(
        "login", "--server", live_server.url, url=None, key=None, home=home, stdin=API_KEY + "\n"
    )
    assert kept.returncode == 0, kept.stderr
    assert f"profile 'default': {live_server.url} (0 devices, 0 online)" in kept.stdout
    profiles = home / ".latlab" / "client.json"
    assert stat.S_IMODE(profiles.stat().st_mode) == 0o600
    assert API_KEY not in kept.stdout + kept.stderr
    assert latlab("jobs", "list", url=None, key=None, home=home).returncode == 0

    read_only = latlab(
        "login", "--server", live_server.url, "--profile", "ro", "--api-key", READ_API_KEY,
        url=None, key=None, home=home,
    )  # fmt: skip
    assert read_only.returncode == 0 and "--profile ro" in read_only.stdout
    denied = latlab("devices", "revoke", "x", "--profile", "ro", url=None, key=None, home=home)
    assert denied.returncode == 1 and "read-only" in denied.stderr

    # a profile's key goes to its own server only
    elsewhere = f"http://127.0.0.1:{free_port()}"
    other = latlab("jobs", "list", "--server", elsewhere, url=None, key=None, home=home)
    assert other.returncode == 2 and f"no API key for {elsewhere}" in other.stderr


def test_a_missing_key_says_where_it_was_looked_for_and_a_local_servers_key_is_found(
    live_server: EmbeddedServer, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    missing = latlab("jobs", "list", url=live_server.url, key=None, home=home)
    assert missing.returncode == 2 and missing.stderr.startswith("usage: latlab jobs list")
    for place in ("--api-key", "LATLAB_API_KEY", "client.json", "credentials.json"):
        assert place in missing.stderr
    assert f"latlab login --server {live_server.url}" in missing.stderr

    # what `latlab server` generates on this machine (the default data dir)
    (home / ".latlab").mkdir()
    (home / ".latlab" / "credentials.json").write_text(
        json.dumps({"api_key": API_KEY, "enroll_key": "e"})
    )
    found = latlab("jobs", "list", url=live_server.url, key=None, home=home)
    assert found.returncode == 0, found.stderr


def test_every_list_has_json(live_server: EmbeddedServer, client: Client, model: ModelOut) -> None:
    client.create_job(model.id, selector={}, config=OnnxRuntimeConfig())
    for argv in (
        ["jobs", "list"],
        ["models", "list"],
        ["devices", "list"],
        ["measurements"],
        ["dataset", "status"],
        ["lut", "show"],
        ["predictors"],
    ):
        result = latlab(*argv, "--json", url=live_server.url)
        assert result.returncode == 0, (argv, result.stderr)
        assert isinstance(json.loads(result.stdout), list), argv
    [job] = json.loads(latlab("jobs", "list", "--json", url=live_server.url).stdout)
    assert job["model_id"] == model.id and job["state"] == "queued"


def test_ctrl_c_while_waiting_says_the_job_goes_on_and_how_to_follow_it(
    live_server: EmbeddedServer, client: Client, model: ModelOut
) -> None:
    env = {**os.environ, "LATLAB_SERVER_URL": live_server.url, "LATLAB_API_KEY": API_KEY}
    # a suite started in the background by a shell runs with Ctrl-C ignored, and a child
    # inherits an ignored signal: give it the default, as a terminal user's command has
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        waiting = subprocess.Popen(
            [LATLAB, "jobs", "create", "--model", model.id, "--selector", "labels.rack=9",
             "--wait"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )  # fmt: skip
    finally:
        signal.signal(signal.SIGINT, inherited)
    assert waiting.stdout is not None
    job_id = waiting.stdout.readline().split()[0]  # printed before it waits
    waiting.send_signal(signal.SIGINT)
    try:
        _, err = waiting.communicate(timeout=120)
    finally:  # a host too busy to finish in time fails this test, not a later one's leak check
        if waiting.poll() is None:
            waiting.kill()
            waiting.communicate()
    assert waiting.returncode == 130
    assert "no online device can take it now (selector {'labels.rack': '9'}" in err
    assert "the job goes on on the server" in err and f"latlab jobs wait {job_id}" in err
    assert "Traceback" not in err
    assert client.job(job_id).state == JobState.queued


@pytest.mark.slow
def test_a_jobs_life_through_the_cli(
    live_server: EmbeddedServer, client: Client, tmp_path: Path
) -> None:
    from tests.test_e2e import start_agent

    path = tmp_path / "m.onnx"
    path.write_bytes(cnn_bytes())
    model_id = latlab("models", "upload", str(path), url=live_server.url).stdout.split()[0]
    fast = ["--warmup-runs", "1", "--warmup-s", "0", "--runs", "5", "--min-s", "0"]
    agent = start_agent(live_server.url, tmp_path, name="life-cpu")
    try:
        timed = latlab(
            "jobs", "create", "--model", model_id, "--device", "life-cpu", *fast, "--wait",
            url=live_server.url,
        )  # fmt: skip
    finally:
        agent.close()
    assert timed.returncode == 0, timed.stderr
    job_id = timed.stdout.split()[0]
    [m] = client.measurements(job_id=job_id)
    assert f"[1/1] {job_id}  done  median {m.stats.median_ms:.3f} ms" in timed.stdout
    assert f"(n={m.stats.n}" in timed.stdout and f"measurement {m.id})" in timed.stdout

    shown = latlab("jobs", "show", job_id, url=live_server.url)
    assert shown.returncode == 0 and f"{job_id}  done  model {model_id}" in shown.stdout
    assert f"result   median {m.stats.median_ms:.3f} ms" in shown.stdout
    assert (
        json.loads(latlab("jobs", "show", job_id, "--json", url=live_server.url).stdout)[
            "measurement_id"
        ]
        == m.id
    )

    listed = latlab("models", "list", url=live_server.url)
    assert listed.returncode == 0 and model_id[:12] in listed.stdout and "m.onnx" in listed.stdout
    model = latlab("models", "show", model_id, url=live_server.url)
    [ops] = [line for line in model.stdout.splitlines() if line.startswith("ops ")]
    assert model.returncode == 0 and "Conv 2, " in ops and "Gemm 1" in ops
    assert f"{m.stats.median_ms:.3f}" in model.stdout  # its measurement, side by side

    queued = client.create_job(model_id, selector={"labels.rack": "9"}, config=OnnxRuntimeConfig())
    cancelled = latlab("jobs", "cancel", queued.id, url=live_server.url)
    assert cancelled.returncode == 0 and f"{queued.id}  cancelled" in cancelled.stdout
    again = latlab("jobs", "cancel", queued.id, job_id, url=live_server.url)
    assert again.returncode == 1 and "not cancelled" in again.stderr and "already" in again.stderr


def test_deletes_ask_first_and_say_what_went(
    live_server: EmbeddedServer, client: Client, tmp_path: Path
) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(cnn_bytes())
    model_id = latlab("models", "upload", str(path), url=live_server.url).stdout.split()[0]
    unasked = latlab("models", "delete", model_id, url=live_server.url)  # not on a terminal
    assert unasked.returncode == 2 and "pass --yes" in unasked.stderr
    assert client.model(model_id).id == model_id

    published = tmp_path / "published.csv"
    published.write_text("space,arch,device,latency_ms\nnb201,1,pixel,1.5\nnb201,2,pixel,2.5\n")
    imported = latlab("dataset", "import", str(published), url=live_server.url)
    assert imported.returncode == 0 and "importing 1 file" in imported.stderr  # its progress
    dataset_id = imported.stdout.split()[0]
    gone = latlab("dataset", "delete", dataset_id[:8], "--yes", url=live_server.url)
    assert gone.returncode == 0, gone.stderr
    assert f"deleted dataset {dataset_id}: removed datasets 1" in gone.stdout
    assert "measurements 2" in gone.stdout  # the import's own numbers go with it
    assert dataset_id not in latlab("dataset", "status", url=live_server.url).stdout

    refused = latlab("models", "delete", model_id, "--yes", url=live_server.url, key=READ_API_KEY)
    assert refused.returncode == 1 and "read-only" in refused.stderr
    deleted = latlab("models", "delete", model_id[:12], "--yes", url=live_server.url)
    assert deleted.returncode == 0 and f"deleted model {model_id}" in deleted.stdout
    assert latlab("models", "show", model_id, url=live_server.url).returncode == 1
