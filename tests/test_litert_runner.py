"""The LiteRT runner: real interpreter runs of TFLite models written by latlab's exporter,
XNNPACK on and off; its errors; and the server only routing LiteRT jobs where they fit."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest

from latlab.agent.errors import Interrupted, RunnerError, RunnerUnavailable
from latlab.agent.runners import available_runners, load_runner
from latlab.client import Client
from latlab.errors import ApiError
from latlab.export.tflite import to_tflite
from latlab.runtimes.litert import LiteRtConfig
from latlab.schemas import DeviceRegistered, JobState, ModelOut, RuntimeInfo
from latlab.server.embedded import EmbeddedServer
from latlab.server.jobs.service import device_can_run
from latlab.spaces.nb201 import Nb201
from tests.factories import API_KEY, NB201_CONV_CELL, cpu_descriptor

pytest.importorskip("ai_edge_litert", reason="LiteRT is not installed: pip install -e '.[tflite]'")

SPACE = Nb201()
QUICK = LiteRtConfig(protocol="fixed", warmup_runs=2, warmup_s=0, timed_runs=5, timed_s=0)


@pytest.fixture(scope="module")
def tflite_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("litert") / "nb201-1.tflite"
    path.write_bytes(to_tflite(SPACE.graph(SPACE.parse(NB201_CONV_CELL)), seed=0))
    return path


def test_litert_times_a_real_tflite_model_with_and_without_xnnpack(tflite_model: Path) -> None:
    runner = load_runner("litert")
    assert "litert" in available_runners()
    assert runner.info().providers == ["XNNPACK", "builtin"]
    with_xnnpack = runner.time(tflite_model, QUICK, lambda: False)
    builtin = runner.time(tflite_model, QUICK.model_copy(update={"xnnpack": False}), lambda: False)
    for timing, provider in ((with_xnnpack, "XNNPACK"), (builtin, "builtin")):
        assert timing.runtime == "litert" and timing.provider == provider
        assert timing.runtime_version.startswith(("ai-edge-litert ", "tflite-runtime "))
        assert len(timing.samples_ms) == 5 and all(s > 0 for s in timing.samples_ms)
        assert timing.warmup.n == 2
        assert timing.input_shapes == {"input": [1, 32, 32, 3]}
        assert timing.ops == [] and timing.op_profile is None
    # the two kernels libraries really differ (XNNPACK is several times faster here)
    assert statistics.median(with_xnnpack.samples_ms) != statistics.median(builtin.samples_ms)


def test_what_litert_cannot_load_is_a_runner_error(tmp_path: Path, tflite_model: Path) -> None:
    runner = load_runner("litert")
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(b"\x08\x07" + b"\x00" * 64)
    with pytest.raises(RunnerError, match="not a TFLite model"):
        runner.time(onnx_file, QUICK, lambda: False)
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(tflite_model.read_bytes()[:200])
    with pytest.raises(RunnerError, match="LiteRT cannot load"):
        runner.time(broken, QUICK, lambda: False)
    gpu = QUICK.model_copy(update={"use_gpu": True})
    with pytest.raises(RunnerUnavailable, match="no GPU delegate"):
        runner.time(tflite_model, gpu, lambda: False)
    with pytest.raises(Interrupted):
        runner.time(tflite_model, QUICK, lambda: True)


def test_a_device_runs_litert_only_with_the_delegate_it_advertises() -> None:
    both = cpu_descriptor(
        runtimes=[RuntimeInfo(name="litert", version="x", providers=["XNNPACK", "builtin"])]
    ).model_dump()
    builtin_only = cpu_descriptor(
        runtimes=[RuntimeInfo(name="litert", version="x", providers=["builtin"])]
    ).model_dump()
    onnx_only = cpu_descriptor().model_dump()
    no_xnnpack = QUICK.model_copy(update={"xnnpack": False})
    assert device_can_run(both, QUICK) and device_can_run(both, no_xnnpack)
    assert not device_can_run(builtin_only, QUICK) and device_can_run(builtin_only, no_xnnpack)
    assert not device_can_run(onnx_only, QUICK)


def test_a_litert_job_for_an_onnx_model_is_refused(
    client: Client, device: tuple[object, DeviceRegistered], model: ModelOut
) -> None:
    _, registered = device
    with pytest.raises(ApiError) as err:
        client.create_job(model.id, device_id=registered.device_id, config=QUICK)
    assert err.value.status == 422 and "litert runs tflite models" in err.value.message
    assert client.jobs() == []


def test_a_tflite_model_goes_through_the_queue_to_a_litert_agent_only(
    server_on_both: EmbeddedServer, tflite_model: Path, tmp_path: Path
) -> None:
    from latlab.agent.runners.ort import OrtRunner
    from tests.test_e2e import start_agent

    onnx_only = start_agent(server_on_both.url, tmp_path, {"onnxruntime": OrtRunner()}, "ort")
    try:
        with Client(server_on_both.url, API_KEY) as client:
            model = client.upload_model(tflite_model)
            assert model.format == "tflite" and model.summary.op_counts["CONV_2D"] == 52
            assert model.summary.inputs[0].shape == [1, 32, 32, 3]
            assert client.upload_model(tflite_model).id == model.id  # deduplicated by sha256
            job = client.create_job(model.id, selector={}, config=QUICK)
            time.sleep(2.0)  # several claim rounds of the onnxruntime-only agent
            assert client.job(job.id).state == JobState.queued
            litert = start_agent(server_on_both.url, tmp_path, None, "litert")
            try:
                [done] = client.wait_jobs([job.id], timeout_s=120)
            finally:
                litert.close()
            assert done.state == JobState.done, done.error
            [m] = client.measurements(job_id=job.id, samples=True)
            names = {d.id: d.name for d in client.devices()}
    finally:
        onnx_only.close()
    assert names[m.device_id] == "litert"
    assert m.runtime == "litert" and m.provider == "XNNPACK" and m.threads == 1
    assert m.stats.n == len(m.samples_ms or []) == 5 and m.stats.median_ms > 0
    assert m.input_shapes == {"input": [1, 32, 32, 3]}


def test_a_broken_tflite_upload_is_refused_and_nothing_is_stored(
    client: Client, tflite_model: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(tflite_model.read_bytes()[:4096])
    with pytest.raises(ApiError) as err:
        client.upload_model(broken)
    assert err.value.status == 422 and "TFLite flatbuffer does not parse" in err.value.message
    assert client.models() == []
