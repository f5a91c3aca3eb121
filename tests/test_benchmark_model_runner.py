"""The benchmark_model runner: TFLite models timed on an Android phone over adb, against the
stand-in adb (tests/stand_in_adb.py) that replays a phone and benchmark_model's real output —
the commands it builds, push and cleanup, what lands in the result and its provenance, the
failures, and a phone agent taking a job through the whole queue on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import shlex
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from latlab.agent.adb import Adb
from latlab.agent.config import AgentSettings
from latlab.agent.errors import Interrupted, RunnerError, RunnerUnavailable
from latlab.agent.main import background_agent
from latlab.agent.runners.benchmark_model import REMOTE_DIR, BenchmarkModelRunner
from latlab.client import Client
from latlab.errors import ApiError
from latlab.export.tflite import to_tflite
from latlab.runtimes.benchmark_model import BenchmarkModelConfig
from latlab.schemas import DatasetCreate, DatasetFormat, JobState, LutCreate, ReportedStats
from latlab.server.embedded import EmbeddedServer
from latlab.spaces.nb201 import Nb201
from tests.factories import API_KEY, ENROLL_KEY, NB201_CONV_CELL
from tests.phone import BINARY, SERIAL, Phone

pytest.importorskip("ai_edge_litert", reason="LiteRT is not installed: pip install -e '.[tflite]'")

CONFIG = BenchmarkModelConfig(
    threads=4,
    warmup_runs=5,
    warmup_s=0.5,
    timed_runs=50,
    timed_s=1.0,
    profile_runs=20,
)
#: The regular runs of the xnnpack fixture: count=64 first=16067 curr=15102 min=14661
#: max=17579 avg=15517.6 std=551 (us); warm-up count=32 avg=15997.4.
FIXTURE_RUNS = ReportedStats(
    reported_by="benchmark_model",
    count=64,
    mean_ms=15.5176,
    std_ms=0.551,
    min_ms=14.661,
    max_ms=17.579,
    first_ms=16.067,
)


@pytest.fixture(scope="module")
def tflite_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    space = Nb201()
    path = tmp_path_factory.mktemp("phone") / f"{'ab' * 32}.tflite"
    path.write_bytes(to_tflite(space.graph(space.parse(NB201_CONV_CELL)), seed=0))
    return path


def flags(command: list[str]) -> dict[str, str]:
    return dict(w.removeprefix("--").split("=", 1) for w in command if w.startswith("--"))


def benchmark_calls(phone: Phone) -> list[list[str]]:
    return [
        shlex.split(" ".join(call[3:]))
        for call in phone.calls()
        if call[2] == "shell" and call[3].startswith(BINARY)
    ]


def test_the_timed_and_profiled_passes_follow_the_job_config(
    phone: Phone, tflite_model: Path
) -> None:
    runner = BenchmarkModelRunner(Adb(SERIAL, phone.adb), BINARY)
    remote = f"{REMOTE_DIR}/m.tflite"
    timed = shlex.split(runner.command(remote, CONFIG, profile=False))
    assert timed[0] == BINARY
    assert flags(timed) == {
        "graph": remote,
        "num_threads": "4",
        "use_gpu": "false",
        "use_xnnpack": "true",
        "warmup_runs": "5",
        "warmup_min_secs": "0.5",
        "num_runs": "50",
        "min_secs": "1.0",
        "max_secs": "600",
        "enable_op_profiling": "false",
    }
    profiled = flags(shlex.split(runner.command(remote, CONFIG, profile=True)))
    assert profiled["enable_op_profiling"] == "true" and profiled["num_runs"] == "20"
    assert profiled["min_secs"] == "0" and profiled["warmup_runs"] == "3"
    gpu = flags(
        shlex.split(
            runner.command(remote, CONFIG.model_copy(update={"use_gpu": True}), profile=False)
        )
    )
    assert gpu["use_gpu"] == "true" and gpu["use_xnnpack"] == "false"
    builtin = flags(
        shlex.split(
            runner.command(remote, CONFIG.model_copy(update={"xnnpack": False}), profile=False)
        )
    )
    assert builtin["use_gpu"] == "false" and builtin["use_xnnpack"] == "false"
    odd = shlex.split(runner.command("/data/local/tmp/a b;rm -rf x.tflite", CONFIG, profile=False))
    assert flags(odd)["graph"] == "/data/local/tmp/a b;rm -rf x.tflite"  # quoted, one word


def test_a_model_is_pushed_timed_profiled_and_removed(phone: Phone, tflite_model: Path) -> None:
    phone.update(heats_by=1)
    runner = BenchmarkModelRunner(Adb(SERIAL, phone.adb), BINARY)
    timing = runner.time(tflite_model, CONFIG, lambda: False)

    remote = f"{REMOTE_DIR}/{tflite_model.name}"
    assert ["-s", SERIAL, "push", str(tflite_model), remote] in phone.calls()
    assert not (phone.fs / remote.lstrip("/")).exists()  # cleaned up
    timed, profiled = benchmark_calls(phone)
    assert flags(timed)["enable_op_profiling"] == "false"
    assert flags(profiled)["enable_op_profiling"] == "true"

    assert timing.runtime == "benchmark_model" and timing.provider == "XNNPACK"
    assert timing.runtime_version.startswith("sha256:") and timing.threads == 4
    assert timing.samples_ms == []  # benchmark_model prints statistics, not runs
    assert timing.reported is not None
    assert timing.reported.model_dump() == pytest.approx(FIXTURE_RUNS.model_dump())
    assert timing.warmup.n == 32 and timing.warmup.total_ms == pytest.approx(32 * 15.9974)
    assert timing.input_shapes == {"input": [1, 32, 32, 3]}
    assert [(op.op_type, op.provider, op.dur_us, op.n) for op in timing.ops] == [
        ("QUANTIZE", "builtin", pytest.approx(203.0), 64),
        ("Convolution (NHWC, QC8) IGEMM", "XNNPACK", pytest.approx(407.0), 64),
        ("Convolution (NHWC, QC8) DWConv", "XNNPACK", pytest.approx(51.0), 64),
        ("TFLite_Detection_PostProcess", "builtin", pytest.approx(3653.0), 64),
    ]
    assert timing.op_profile is not None and timing.op_profile["statistic"] == "mean"
    assert timing.op_profile["nodes_executed"] == 171
    assert timing.provenance == {
        "phone": SERIAL,
        "delegate": "XNNPACK",
        "threads": 4,
        "thermal_status_before": 1,
        "thermal_status_after": 3,  # two passes, each warmed the phone by one step
        "host": {"thermal": 3, "thermal_limit": 0},  # what latlab.quality judges
        "fixed_performance_mode": False,
        "init_ms": pytest.approx(32.163),
        "binary": BINARY,
    }


def test_fixed_performance_mode_is_held_for_the_job_and_recorded(
    phone: Phone, tflite_model: Path
) -> None:
    runner = BenchmarkModelRunner(Adb(SERIAL, phone.adb), BINARY, fixed_performance=True)
    no_profile = CONFIG.model_copy(update={"profile_ops": False})
    timing = runner.time(tflite_model, no_profile, lambda: False)
    shell = [" ".join(c[3:]) for c in phone.calls() if c[2] == "shell"]
    modes = [c for c in shell if c.startswith("cmd power")]
    assert modes == [
        "cmd power set-fixed-performance-mode-enabled true",
        "cmd power set-fixed-performance-mode-enabled false",
    ]
    run = shell.index(next(c for c in shell if c.startswith(BINARY)))
    assert shell.index(modes[0]) < run < shell.index(modes[1])  # on for the run, off after
    assert json.loads(phone.state_file.read_text())["fixed_performance"] is False
    assert timing.provenance is not None and timing.provenance["fixed_performance_mode"] is True
    assert timing.ops == [] and timing.op_profile is None and len(benchmark_calls(phone)) == 1

    phone.update(fixed_performance_supported=False)
    with pytest.raises(RunnerUnavailable, match="no fixed-performance mode"):
        runner.time(tflite_model, no_profile, lambda: False)
    assert not (phone.fs / REMOTE_DIR.lstrip("/") / tflite_model.name).exists()


def test_phone_failures_are_errors_and_the_model_never_stays_behind(
    phone: Phone, tflite_model: Path, tmp_path: Path
) -> None:
    runner = BenchmarkModelRunner(Adb(SERIAL, phone.adb), BINARY)
    pushed = phone.fs / REMOTE_DIR.lstrip("/") / tflite_model.name

    phone.update(load_error="Didn't find op for builtin opcode 'CONV_2D' version '9'")
    with pytest.raises(RunnerError, match="builtin opcode 'CONV_2D'") as load:
        runner.time(tflite_model, CONFIG, lambda: False)
    assert not isinstance(load.value, RunnerUnavailable) and not pushed.exists()
    phone.update(load_error=None)

    with pytest.raises(Interrupted):  # a stop between the two passes
        runner.time(tflite_model, CONFIG, lambda: True)
    assert not pushed.exists()

    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(b"\x08\x07" + b"\x00" * 64)
    with pytest.raises(RunnerError, match="not a TFLite model"):
        runner.time(onnx_file, CONFIG, lambda: False)

    (phone.fs / BINARY.lstrip("/")).unlink()
    with pytest.raises(RunnerUnavailable, match="no benchmark_model at"):
        BenchmarkModelRunner(Adb(SERIAL, phone.adb), BINARY).info()
    with pytest.raises(RunnerError, match="benchmark_model: not found"):
        runner.time(tflite_model, CONFIG, lambda: False)
    phone.update(authorized=False)
    with pytest.raises(RunnerUnavailable, match="unauthorised"):
        runner.time(tflite_model, CONFIG, lambda: False)


def phone_settings(url: str, phone: Phone, tmp_path: Path) -> AgentSettings:
    return AgentSettings(
        server_url=url,
        enroll_key=SecretStr(ENROLL_KEY),
        state_file=tmp_path / "phone-agent.json",
        cache_dir=tmp_path / "phone-cache",
        claim_wait_s=0.5,
        adb_serial=SERIAL,
        adb_path=phone.adb,
        benchmark_model_path=BINARY,
    )


def test_a_phone_agent_takes_a_tflite_job_through_the_queue(
    server_on_both: EmbeddedServer, phone: Phone, tflite_model: Path, tmp_path: Path
) -> None:
    fast = CONFIG.model_copy(update={"profile_runs": 3})
    with (
        background_agent(phone_settings(server_on_both.url, phone, tmp_path)),
        Client(server_on_both.url, API_KEY) as client,
    ):
        [device] = client.devices()
        model = client.upload_model(tflite_model)
        phone.update(load_error="Failed to load model")
        failing = client.create_job(model.id, device_id=device.id, config=fast)
        [failed] = client.wait_jobs([failing.id], timeout_s=60)
        phone.update(load_error=None)
        job = client.create_job(model.id, device_id=device.id, config=fast)
        [done] = client.wait_jobs([job.id], timeout_s=60)
        [m] = client.measurements(job_id=job.id, samples=True, ops=True)

    assert device.name == f"samsung SM-G991B {SERIAL}"
    d = device.descriptor
    assert (d.device_model, d.soc, d.serial, d.cpu_arch) == (
        "samsung SM-G991B",
        "Exynos 2100",
        SERIAL,
        "arm64-v8a",
    )
    assert (d.os, d.cpu_cores, d.ram_bytes) == ("Android 14", 8, 7_812_345 * 1024)
    assert [r.name for r in d.runtimes] == ["benchmark_model"]
    assert "GPU" in d.runtimes[0].providers

    assert failed.state == JobState.failed and "Failed to load model" in (failed.error or "")
    assert done.state == JobState.done, done.error  # the agent kept serving
    assert m.runtime == "benchmark_model" and m.provider == "XNNPACK" and m.threads == 4
    assert m.stats.n == 64 and m.samples_ms == []
    assert m.stats.median_ms == pytest.approx(15.5176) == m.stats.mean_ms
    assert m.stats.std_ms == pytest.approx(0.551) and m.stats.p90_ms is None
    assert m.provenance is not None and m.provenance["headline"] == "mean"
    assert m.provenance["reported"]["count"] == 64
    assert m.provenance["thermal_status_before"] == 1 and m.provenance["phone"] == SERIAL
    # a phone throttling (Android thermal status over 0) during the run says so
    assert m.quality.verdict == "throttled"
    assert m.quality.verdict_rule is not None and "thermal reading" in m.quality.verdict_rule
    assert m.ops is not None and len(m.ops) == 4 and m.ops[3].dur_us == pytest.approx(3653.0)


def test_each_phone_on_a_host_keeps_its_own_registration() -> None:
    one, other = AgentSettings(adb_serial="R5CT1234ABC"), AgentSettings(adb_serial="emulator-5554")
    assert one.state_file.name == "agent-R5CT1234ABC.json"
    assert other.state_file.name == "agent-emulator-5554.json"
    assert AgentSettings().state_file.name == "agent.json"
    assert AgentSettings(adb_serial="x", state_file=Path("/tmp/mine.json")).state_file.name == (
        "mine.json"
    )


def test_a_campaign_on_a_phone_exports_tflite_models_and_its_dataset_reads_back(
    live_server: EmbeddedServer, phone: Phone, tmp_path: Path
) -> None:
    archs = ["0,0,0,0,0,1", "11791", "7"]
    fast = CONFIG.model_copy(update={"profile_ops": False})
    with (
        background_agent(phone_settings(live_server.url, phone, tmp_path)),
        Client(live_server.url, API_KEY) as client,
    ):
        [device] = client.devices()
        created = client.create_dataset(
            DatasetCreate(
                name="phone", space="nb201", archs=archs, device_ids=[device.id], config=fast
            )
        )
        done = client.wait_dataset(created.id, timeout_s=120)
        models = client.models()
        rows = list(
            csv.DictReader(io.StringIO(client.export_dataset(done.id, DatasetFormat.csv).decode()))
        )
        with pytest.raises(ApiError) as lut:
            client.create_lut(
                LutCreate(
                    device_id=device.id, source="micro-models", space="nb201", n=2, config=fast
                )
            )
    assert done.state == "done" and done.progress.done == 3
    assert len(models) == 3 and {m.format for m in models} == {"tflite"}
    assert all(m.filename.endswith(".tflite") for m in models)
    # each arch's model was pushed to the phone and timed there (the stand-in replays one output)
    assert len(benchmark_calls(phone)) == 3
    assert [float(r["latency_ms"]) for r in rows] == pytest.approx([15.5176] * 3)
    assert (
        lut.value.status == 422 and "LUTs are built from ONNX per-op profiles" in lut.value.message
    )


def test_a_hot_phone_takes_no_job_until_it_cools_down(
    live_server: EmbeddedServer, phone: Phone, tflite_model: Path, tmp_path: Path
) -> None:
    phone.update(thermal=3)  # severe
    settings = phone_settings(live_server.url, phone, tmp_path).model_copy(
        update={"max_thermal_status": 1, "thermal_poll_s": 0.2}
    )
    fast = CONFIG.model_copy(update={"profile_ops": False})
    with background_agent(settings), Client(live_server.url, API_KEY) as client:
        [device] = client.devices()
        job = client.create_job(
            client.upload_model(tflite_model).id, device_id=device.id, config=fast
        )
        time.sleep(1.5)  # several readings of a hot phone
        assert client.job(job.id).state == JobState.queued
        assert not benchmark_calls(phone)
        phone.update(thermal=1)  # light: under the gate
        [done] = client.wait_jobs([job.id], timeout_s=60)
    assert done.state == JobState.done, done.error
