"""End to end over real HTTP: a live server, a real agent timing real ONNX models with
onnxruntime, results read back through the API; on SQLite and on PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import onnxruntime as ort
import pytest
from pydantic import SecretStr

from latlab.agent.config import AgentSettings
from latlab.agent.isolation import split_cpus
from latlab.agent.main import background_agent
from latlab.agent.runners.base import Runner
from latlab.client import Client
from latlab.demo_models import CnnSpec, make_cnn
from latlab.runtimes.onnxruntime import OnnxRuntimeConfig
from latlab.schemas import JobState
from latlab.server.embedded import EmbeddedServer
from tests.factories import API_KEY, ENROLL_KEY, cnn_bytes, make_settings
from tests.fake_runner import FakeRunner

FAST = OnnxRuntimeConfig(
    protocol="fixed", warmup_runs=2, warmup_s=0, timed_runs=10, timed_s=0, profile_runs=3
)


def agent_settings(url: str, tmp_path: Path, name: str = "e2e") -> AgentSettings:
    return AgentSettings(
        server_url=url,
        enroll_key=SecretStr(ENROLL_KEY),
        name=name,
        state_file=tmp_path / f"{name}.json",
        cache_dir=tmp_path / f"{name}-cache",
        claim_wait_s=0.5,
    )


class RunningAgent:
    """An agent working in a thread until ``close()`` (for tests that stop it mid-way)."""

    def __init__(self, settings: AgentSettings, runners: dict[str, Runner] | None) -> None:
        self._stack = contextlib.ExitStack()
        self.agent = self._stack.enter_context(background_agent(settings, runners))

    def close(self) -> None:
        self._stack.close()


def start_agent(
    url: str, tmp_path: Path, runners: dict[str, Runner] | None = None, name: str = "e2e"
) -> RunningAgent:
    return RunningAgent(agent_settings(url, tmp_path, name), runners)


@pytest.fixture
def real_agent(server_on_both: EmbeddedServer, tmp_path: Path) -> Iterator[RunningAgent]:
    running = start_agent(server_on_both.url, tmp_path)
    yield running
    running.close()


def test_an_agent_times_a_real_onnx_model_and_the_result_reads_back(
    server_on_both: EmbeddedServer, real_agent: RunningAgent, tmp_path: Path
) -> None:
    spec = CnnSpec("e2e", resolution=24, channels=(8, 16), strides=(1, 2))
    path = tmp_path / "e2e.onnx"
    path.write_bytes(make_cnn(spec).SerializeToString())
    with Client(server_on_both.url, API_KEY) as client:
        device = client.devices()[0]
        assert device.online and device.descriptor.runtimes[0].name == "onnxruntime"
        model = client.upload_model(path)
        job = client.create_job(model.id, device_id=device.id, config=FAST)
        [done] = client.wait_jobs([job.id], timeout_s=120)
        assert done.state == JobState.done, done.error
        [m] = client.measurements(job_id=job.id, samples=True, ops=True)

    assert m.device_id == device.id and m.model_id == model.id
    assert m.runtime == "onnxruntime" and m.runtime_version == ort.__version__
    assert m.provider == "CPUExecutionProvider" and m.threads == 1
    assert m.input_shapes == {"input": [1, 3, 24, 24]}
    assert m.config == FAST and m.protocol_version == "1"
    assert m.stats.n == len(m.samples_ms or []) >= 10
    assert m.warmup.n >= 2
    assert 0 < m.stats.min_ms <= m.stats.median_ms <= m.stats.max_ms
    assert m.ops, "per-op rows"
    assert all(op.n == 3 and op.dur_us >= 0 for op in m.ops)
    covered = {name for op in m.ops for name in op.source_nodes}
    assert {"b0.conv", "b1.conv", "head.fc"} <= covered
    assert m.op_profile is not None and m.op_profile["graph_optimization"] == "all"


def test_per_op_profiling_can_be_switched_off(
    server_on_both: EmbeddedServer, real_agent: RunningAgent
) -> None:
    with Client(server_on_both.url, API_KEY) as client:
        model = client.upload_model("m.onnx", data=cnn_bytes())
        job = client.create_job(
            model.id, selector={}, config=FAST.model_copy(update={"profile_ops": False})
        )
        [done] = client.wait_jobs([job.id], timeout_s=120)
        assert done.state == JobState.done, done.error
        [m] = client.measurements(job_id=job.id, ops=True)
    assert m.ops == [] and m.op_profile is None


def test_a_runner_error_ends_the_job_failed_with_its_text(
    live_server: EmbeddedServer, tmp_path: Path
) -> None:
    running = start_agent(
        live_server.url, tmp_path, {"onnxruntime": FakeRunner(fail_with="Conv: no kernel for int4")}
    )
    try:
        with Client(live_server.url, API_KEY) as client:
            model = client.upload_model("m.onnx", data=cnn_bytes())
            job = client.create_job(model.id, selector={})
            [done] = client.wait_jobs([job.id], timeout_s=60)
            assert client.measurements() == []
        assert done.state == JobState.failed
        assert done.error == "Conv: no kernel for int4"
    finally:
        running.close()


def test_a_model_onnxruntime_cannot_run_is_reported_failed_by_the_real_runner(
    live_server: EmbeddedServer, tmp_path: Path
) -> None:
    from onnx import TensorProto, helper

    node = helper.make_node("Frobnicate", ["x"], ["y"], domain="com.example")
    graph = helper.make_graph(
        [node],
        "custom",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model_proto = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    )
    running = start_agent(live_server.url, tmp_path)
    try:
        with Client(live_server.url, API_KEY) as client:
            model = client.upload_model("custom.onnx", data=model_proto.SerializeToString())
            job = client.create_job(model.id, selector={}, config=FAST)
            [done] = client.wait_jobs([job.id], timeout_s=60)
            assert client.measurements(job_id=job.id) == []
        assert done.state == JobState.failed
        assert "Frobnicate" in (done.error or "")
    finally:
        running.close()


# --------------------------------------------------------------------------- the agent command


def _agent_process(
    url: str, tmp_path: Path, *options: str, verbose: bool = True, stderr: int = subprocess.STDOUT
) -> subprocess.Popen[str]:
    exe = Path(sys.executable).with_name("latlab")
    return subprocess.Popen(
        [
            str(exe),
            *(["-v"] if verbose else []),
            "agent",
            "--server",
            url,
            "--enroll-key",
            ENROLL_KEY,
            "--name",
            "cli-agent",
            "--state-file",
            str(tmp_path / "cli-agent.json"),
            "--cache-dir",
            str(tmp_path / "cli-cache"),
            *options,
        ],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env={**os.environ, "LATLAB_AGENT_CLAIM_WAIT_S": "0.5"},
    )


def _wait_state(client: Client, job_id: str, state: JobState, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while client.job(job_id).state != state:
        assert time.monotonic() < deadline, f"job never reached {state}"
        time.sleep(0.1)


def test_the_agent_command_releases_its_job_on_sigterm_and_reuses_its_registration(
    live_server: EmbeddedServer, tmp_path: Path
) -> None:
    with Client(live_server.url, API_KEY) as client:
        model = client.upload_model("m.onnx", data=cnn_bytes())
        slow = client.create_job(
            model.id, selector={}, config=FAST.model_copy(update={"timed_s": 120})
        )
        proc = _agent_process(live_server.url, tmp_path)
        try:
            _wait_state(client, slow.id, JobState.leased)
            time.sleep(0.5)  # well inside the timed runs
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=30)
        finally:
            proc.kill()
        assert proc.returncode == 0, out
        assert "released" in out
        released = client.job(slow.id)
        assert released.state == JobState.queued and released.attempts == 0
        client.cancel_job(slow.id)

        fast = client.create_job(model.id, selector={}, config=FAST)
        proc = _agent_process(live_server.url, tmp_path)
        try:
            [done] = client.wait_jobs([fast.id], timeout_s=60)
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=30)
        finally:
            proc.kill()
        assert done.state == JobState.done, done.error
        assert proc.returncode == 0, out
        assert len(client.devices()) == 1  # the second start reused the saved registration


def test_the_agent_command_says_who_it_is_and_that_it_waits_when_it_starts(
    live_server: EmbeddedServer, tmp_path: Path
) -> None:
    split = split_cpus()
    pinned = [] if split is None else ["--timing-cpus", ",".join(map(str, split[0]))]
    lines = []
    for _ in ("registers", "reuses its registration"):
        proc = _agent_process(
            live_server.url, tmp_path, *pinned, verbose=False, stderr=subprocess.PIPE
        )
        try:
            assert proc.stderr is not None
            lines.append(proc.stderr.readline())  # the first line, without -v
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
        assert proc.returncode == 0, lines[-1] + err
    with Client(live_server.url, API_KEY) as client:
        [device] = client.devices()
    for line in lines:
        assert line.startswith(f'agent started: device "cli-agent" ({device.id}) on ')
        assert live_server.url in line and "runtimes onnxruntime " in line, line
        assert "waiting for jobs (Ctrl-C stops it and gives a leased job back)" in line
        if split is not None:
            assert f"timing on CPUs {','.join(map(str, split[0]))};" in line
    assert "agent stopped" in out


@pytest.mark.slow
def test_a_job_whose_agent_is_killed_mid_run_is_rerun_by_another_and_measured_once(
    tmp_path: Path, db_url: str
) -> None:
    """kill -9 leaves no release and no failure report: the lease runs out, the reaper puts
    the job back, another agent times it, and exactly one measurement row exists."""
    settings = make_settings(tmp_path, db_url, lease_s=2.0, reap_every_s=0.2)
    with EmbeddedServer(settings) as server, Client(server.url, API_KEY) as client:
        model = client.upload_model("m.onnx", data=cnn_bytes())
        job = client.create_job(
            model.id, selector={}, config=FAST.model_copy(update={"timed_s": 3.0})
        )
        proc = _agent_process(server.url, tmp_path)
        try:
            _wait_state(client, job.id, JobState.leased)
            time.sleep(0.5)  # inside the timed runs
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
        finally:
            proc.kill()
        assert proc.returncode == -signal.SIGKILL
        killed_device = client.job(job.id).claimed_by
        survivor = start_agent(server.url, tmp_path, name="survivor")
        try:
            [done] = client.wait_jobs([job.id], timeout_s=90)
        finally:
            survivor.close()
        rows = client.measurements(model_id=model.id)
        names = {d.id: d.name for d in client.devices()}
    assert done.state == JobState.done, done.error
    assert done.attempts == 2  # the killed agent's attempt, then the survivor's
    assert names[killed_device or ""] == "cli-agent"
    assert len(rows) == 1 and rows[0].job_id == job.id
    assert names[rows[0].device_id] == "survivor"
