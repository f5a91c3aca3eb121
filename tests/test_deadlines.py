"""A job's deadline: a config setting scaled from the protocol and bounded; the agent stops a
model that never finishes (or takes all the memory) and fails its job, then measures the next;
the server refuses a result after the deadline and fails a job whose agent keeps its lease
alive past it. On SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from latlab.agent.config import AgentSettings
from latlab.agent.main import background_agent
from latlab.agent.worker import RunnerProcess
from latlab.client import Client
from latlab.errors import ApiError
from latlab.runtimes import MAX_DEADLINE_S, parse_config
from latlab.runtimes.onnxruntime import OnnxRuntimeConfig
from latlab.schemas import JobState
from latlab.server.embedded import EmbeddedServer
from tests.endless_models import memory_hog_onnx, never_ending_onnx
from tests.factories import API_KEY, ENROLL_KEY, cnn_bytes, make_settings, register, wait_for
from tests.test_api_jobs import result_for, status_of

AUTH = {"Authorization": f"Bearer {API_KEY}"}
FAST = OnnxRuntimeConfig(
    protocol="fixed", warmup_runs=2, warmup_s=0, timed_runs=10, timed_s=0, profile_runs=3
)
#: The deadline the hostile jobs ask for.
SHORT_S = 2.0


# --------------------------------------------------------------------------- the setting


def test_a_deadline_is_scaled_from_the_protocol_unless_given_and_is_bounded() -> None:
    default = OnnxRuntimeConfig()  # adaptive: the caps, warm-up 1 s and 3 x 5 s timed
    assert default.deadline_s == 600 + 10 * (1.0 + 3 * 5.0)
    fixed = OnnxRuntimeConfig(protocol="fixed")
    assert fixed.deadline_s == 600 + 10 * (1.0 + 2.0)
    assert OnnxRuntimeConfig(protocol="fixed", warmup_s=60, timed_s=240).deadline_s == 600 + 3000
    assert OnnxRuntimeConfig(warmup_max_s=60, timed_max_s=80, retimes=0).deadline_s == 600 + 1400
    assert OnnxRuntimeConfig(deadline_s=5).deadline_s == 5
    # stored with the job: what a stored config without one reads back as
    assert parse_config({"timed_s": 10}).model_dump()["deadline_s"] == 600 + 10 * 16
    assert parse_config({"protocol": "fixed", "timed_s": 10}).deadline_s == 600 + 10 * 11
    # the protocol's settings, not the runtime's: measurements with any deadline compare
    assert OnnxRuntimeConfig(deadline_s=5).identity() == default.identity()
    for bad in (0.5, MAX_DEADLINE_S + 1):
        with pytest.raises(ValidationError, match="deadline_s"):
            OnnxRuntimeConfig(deadline_s=bad)


def test_a_job_asking_for_a_deadline_over_the_bound_is_refused_and_nothing_is_queued(
    live_server: EmbeddedServer, client: Client
) -> None:
    model = client.upload_model("m.onnx", data=cnn_bytes())
    body = {"model_id": model.id, "selector": {}, "config": {"deadline_s": 10**15}}
    answer = httpx.post(f"{live_server.url}/v1/jobs", json=body, headers=AUTH)
    assert answer.status_code == 422
    assert "deadline_s" in answer.json()["error"]["message"]
    assert client.jobs() == []


# --------------------------------------------------------------------------- the server


@pytest.fixture
def strict_server(tmp_path: Path, db_url: str) -> Iterator[EmbeddedServer]:
    """No grace after a deadline, and no reaper to fail a late job before its result comes."""
    settings = make_settings(tmp_path, db_url, deadline_grace_s=0, reap_every_s=3600)
    with EmbeddedServer(settings) as server:
        yield server


def test_a_result_after_the_deadline_is_refused_and_the_job_fails(
    strict_server: EmbeddedServer,
) -> None:
    with Client(strict_server.url, API_KEY) as client:
        agent_client, reg = register(strict_server.url)
        with agent_client:
            model = client.upload_model("m.onnx", data=cnn_bytes())
            config = OnnxRuntimeConfig(deadline_s=1)
            job = client.create_job(model.id, device_id=reg.device_id, config=config)
            claim = agent_client.claim(wait_s=0)
            assert claim is not None and claim.config.deadline_s == 1
            leased = client.job(job.id)
            assert leased.deadline_at is not None and leased.lease_expires_at is not None
            assert leased.deadline_at - leased.lease_expires_at == timedelta(seconds=1 - 30)
            wait_for(lambda: time.time() > leased.deadline_at.timestamp() + 0.2)  # type: ignore[union-attr]
            late = status_of(lambda: agent_client.upload_result(job.id, result_for(claim)))
            again = status_of(lambda: agent_client.upload_result(job.id, result_for(claim)))
            failed = client.job(job.id)
            assert client.measurements() == []
    assert late.status == 409 and late.code == "deadline_passed"
    assert "deadline of 1 s passed" in late.message and "result is refused" in late.message
    assert again.status == 409  # the job is over
    assert failed.state == JobState.failed and failed.deadline_at is None
    assert "deadline of 1 s passed" in (failed.error or "")
    assert "result refused" in (failed.error or "")


def test_a_job_whose_agent_keeps_its_lease_alive_past_the_deadline_is_failed(
    tmp_path: Path, db_url: str
) -> None:
    """An agent that cannot stop its runtime (or does not try) heartbeats forever: the reaper
    fails the job at its deadline, not to be tried again, and the lease is gone."""
    settings = make_settings(tmp_path, db_url, deadline_grace_s=0, reap_every_s=0.2)
    with EmbeddedServer(settings) as server, Client(server.url, API_KEY) as client:
        agent_client, reg = register(server.url)
        with agent_client:
            model = client.upload_model("m.onnx", data=cnn_bytes())
            config = OnnxRuntimeConfig(deadline_s=1)
            job = client.create_job(model.id, device_id=reg.device_id, config=config)
            claim = agent_client.claim(wait_s=0)
            assert claim is not None

            refusals: list[ApiError] = []

            def heartbeat_refused() -> bool:
                try:
                    agent_client.heartbeat(claim.job_id, claim.lease_token)
                except ApiError as exc:
                    refusals.append(exc)
                return bool(refusals)

            wait_for(heartbeat_refused)
            beat = refusals[0]
            failed = client.job(job.id)
    assert beat.status == 409
    assert failed.attempts == 1 and failed.state == JobState.failed
    assert "deadline of 1 s passed on device" in (failed.error or "")


# --------------------------------------------------------------------------- the agent


def agent_settings(url: str, tmp_path: Path, **overrides: object) -> AgentSettings:
    values: dict[str, object] = {
        "server_url": url,
        "enroll_key": SecretStr(ENROLL_KEY),
        "name": "deadline",
        "state_file": tmp_path / "agent.json",
        "cache_dir": tmp_path / "cache",
        "claim_wait_s": 0.5,
    }
    values.update(overrides)
    return AgentSettings(**values)  # type: ignore[arg-type]


def test_an_agent_fails_a_never_ending_model_at_its_deadline_then_measures_the_next_job(
    server_on_both: EmbeddedServer, tmp_path: Path
) -> None:
    """The runner is stuck inside onnxruntime's Loop (no Python between two iterations): the
    agent kills its runner process at the deadline, well before the server's grace runs out,
    reports the job failed, and times the next job in a new one."""
    with (
        Client(server_on_both.url, API_KEY) as client,
        background_agent(agent_settings(server_on_both.url, tmp_path)) as agent,
    ):
        endless = client.upload_model("endless.onnx", data=never_ending_onnx())
        model = client.upload_model("m.onnx", data=cnn_bytes())
        stuck = client.create_job(
            endless.id, selector={}, config=FAST.model_copy(update={"deadline_s": SHORT_S})
        )
        after = client.create_job(model.id, selector={}, config=FAST)
        failed, done = client.wait_jobs([stuck.id, after.id], timeout_s=120)
        runner = agent.runners["onnxruntime"]
        stats = agent.stats
    assert failed.state == JobState.failed
    assert failed.error == f"deadline of {SHORT_S:g} s passed: stopped"  # the agent's words
    assert done.state == JobState.done, done.error
    assert stats.failed == [stuck.id] and stats.done == [after.id]
    assert isinstance(runner, RunnerProcess) and runner.starts == 2  # killed, then a new one


def test_an_agent_fails_a_model_that_exhausts_memory_then_measures_the_next_job(
    server_on_both: EmbeddedServer, tmp_path: Path
) -> None:
    """The runner process's memory is capped: onnxruntime's allocation fails there, not the
    host's memory, and the job fails with onnxruntime's words."""
    settings = agent_settings(server_on_both.url, tmp_path, runner_memory_bytes=2**30)
    with (
        Client(server_on_both.url, API_KEY) as client,
        background_agent(settings) as agent,
    ):
        hog = client.upload_model("hog.onnx", data=memory_hog_onnx())
        model = client.upload_model("m.onnx", data=cnn_bytes())
        greedy = client.create_job(hog.id, selector={}, config=FAST)
        after = client.create_job(model.id, selector={}, config=FAST)
        failed, done = client.wait_jobs([greedy.id, after.id], timeout_s=120)
        stats = agent.stats
    assert failed.state == JobState.failed
    assert "onnxruntime failed to run the model" in (failed.error or "")
    assert "alloc" in (failed.error or "")
    assert done.state == JobState.done, done.error
    assert stats.failed == [greedy.id] and stats.done == [after.id]
