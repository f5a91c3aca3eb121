"""The agent loop's error handling: backoff while the server is away, lost leases, deadlines,
the model cache. (The same paths run with the real runner in test_e2e.py and
test_deadlines.py.)"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from latlab.agent.config import AgentSettings
from latlab.agent.errors import RegistrationError
from latlab.agent.main import connect_agent
from latlab.client import Client
from latlab.errors import ServerUnreachable
from latlab.runtimes.onnxruntime import OnnxRuntimeConfig
from latlab.schemas import JobState
from latlab.server.embedded import EmbeddedServer
from tests.factories import API_KEY, ENROLL_KEY, cnn_bytes, make_settings, wait_for
from tests.fake_runner import FakeRunner


def settings_for(url: str, tmp_path: Path, **overrides: object) -> AgentSettings:
    values: dict[str, object] = {
        "server_url": url,
        "enroll_key": SecretStr(ENROLL_KEY),
        "name": "loop",
        "state_file": tmp_path / "agent.json",
        "cache_dir": tmp_path / "cache",
        "claim_wait_s": 0.3,
        "max_backoff_s": 0.5,
    }
    values.update(overrides)
    return AgentSettings(**values)  # type: ignore[arg-type]


def test_the_agent_backs_off_while_the_server_is_down_and_resumes(
    tmp_path: Path, sqlite_url: str
) -> None:
    settings = make_settings(tmp_path, sqlite_url)
    server = EmbeddedServer(settings).start()
    port = server.port
    runner = FakeRunner()
    stop = threading.Event()
    agent = connect_agent(settings_for(server.url, tmp_path), {"onnxruntime": runner}, stop)
    worker = threading.Thread(target=agent.run)
    worker.start()
    try:
        server.stop()
        time.sleep(1.5)  # the agent's claims fail meanwhile
        assert worker.is_alive()
        server = EmbeddedServer(settings, port=port).start()
        with Client(server.url, API_KEY) as client:
            model = client.upload_model("m.onnx", data=cnn_bytes())
            job = client.create_job(model.id, selector={})
            [done] = client.wait_jobs([job.id], timeout_s=30)
        assert done.state == JobState.done
    finally:
        stop.set()
        worker.join(timeout=30)
        agent.client.close()
        server.stop()


def test_a_job_cancelled_mid_run_is_abandoned_without_a_result(
    tmp_path: Path, sqlite_url: str
) -> None:
    settings = make_settings(tmp_path, sqlite_url, lease_s=0.6)
    with EmbeddedServer(settings) as server, Client(server.url, API_KEY) as client:
        runner = FakeRunner(sleep_s=30)
        stop = threading.Event()
        agent = connect_agent(settings_for(server.url, tmp_path), {"onnxruntime": runner}, stop)
        worker = threading.Thread(target=agent.run)
        worker.start()
        try:
            model = client.upload_model("m.onnx", data=cnn_bytes())
            job = client.create_job(model.id, selector={})
            wait_for(lambda: client.job(job.id).state == JobState.leased)
            client.cancel_job(job.id)
            wait_for(lambda: job.id in agent.stats.lost)  # the next heartbeat finds out
            assert client.measurements() == []
            assert client.job(job.id).state == JobState.cancelled
        finally:
            stop.set()
            worker.join(timeout=30)
            agent.client.close()


def test_a_model_is_downloaded_once_per_device(tmp_path: Path, live_server: EmbeddedServer) -> None:
    runner = FakeRunner()
    stop = threading.Event()
    agent = connect_agent(settings_for(live_server.url, tmp_path), {"onnxruntime": runner}, stop)
    worker = threading.Thread(target=agent.run)
    worker.start()
    try:
        with Client(live_server.url, API_KEY) as client:
            model = client.upload_model("m.onnx", data=cnn_bytes())
            ids = [
                client.create_job(model.id, selector={}, config=OnnxRuntimeConfig(seed=i)).id
                for i in range(3)
            ]
            assert all(j.state == JobState.done for j in client.wait_jobs(ids, timeout_s=30))
    finally:
        stop.set()
        worker.join(timeout=30)
        agent.client.close()
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [f"{model.id}.onnx"]
    assert len(set(runner.timed)) == 1 and len(runner.timed) == 3


def test_a_new_agent_without_the_enrollment_key_cannot_start(
    tmp_path: Path, live_server: EmbeddedServer
) -> None:
    with pytest.raises(RegistrationError, match="enrollment key"):
        connect_agent(
            settings_for(live_server.url, tmp_path, enroll_key=SecretStr("")),
            {"onnxruntime": FakeRunner()},
        )
    with pytest.raises(RegistrationError, match="refused"):
        connect_agent(
            settings_for(live_server.url, tmp_path, enroll_key=SecretStr("wrong")),
            {"onnxruntime": FakeRunner()},
        )
    assert not (tmp_path / "agent.json").exists()


def test_a_model_download_cut_by_a_server_outage_is_retried_not_failed(
    tmp_path: Path, live_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = FakeRunner()
    stop = threading.Event()
    agent = connect_agent(settings_for(live_server.url, tmp_path), {"onnxruntime": runner}, stop)
    download = agent.client.download_model
    attempts: list[str] = []

    def flaky(model_id: str, path: Path) -> None:
        attempts.append(model_id)
        if len(attempts) <= 2:
            raise ServerUnreachable("GET /v1/models/.../content: [Errno 111] Connection refused")
        download(model_id, path)

    monkeypatch.setattr(agent.client, "download_model", flaky)
    worker = threading.Thread(target=agent.run)
    worker.start()
    try:
        with Client(live_server.url, API_KEY) as client:
            model = client.upload_model("m.onnx", data=cnn_bytes())
            job = client.create_job(model.id, selector={})
            [done] = client.wait_jobs([job.id], timeout_s=30)
        assert done.state == JobState.done and done.attempts == 1
        assert len(attempts) == 3 and len(runner.timed) == 1
    finally:
        stop.set()
        worker.join(timeout=30)
        agent.client.close()


def test_a_job_past_its_deadline_fails_between_two_runs_and_the_agent_goes_on(
    tmp_path: Path, live_server: EmbeddedServer
) -> None:
    """A runner in the agent's own process stops at the first run after the deadline (one in a
    runner process is killed at once: test_deadlines.py)."""
    runner = FakeRunner(sleep_s=3)  # every job takes 3 s
    stop = threading.Event()
    agent = connect_agent(settings_for(live_server.url, tmp_path), {"onnxruntime": runner}, stop)
    worker = threading.Thread(target=agent.run)
    worker.start()
    try:
        with Client(live_server.url, API_KEY) as client:
            model = client.upload_model("m.onnx", data=cnn_bytes())
            short = client.create_job(model.id, selector={}, config=OnnxRuntimeConfig(deadline_s=1))
            usual = client.create_job(model.id, selector={}, config=OnnxRuntimeConfig(seed=1))
            failed, done = client.wait_jobs([short.id, usual.id], timeout_s=60)
    finally:
        stop.set()
        worker.join(timeout=30)
        agent.client.close()
    assert failed.state == JobState.failed and failed.error == "deadline of 1 s passed: stopped"
    assert done.state == JobState.done
    assert agent.stats.failed == [short.id] and agent.stats.done == [usual.id]
