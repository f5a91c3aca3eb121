"""A job's deadline: a config setting scaled from the protocol and bounded; the server refuses
a result after the deadline and fails a job whose agent keeps its lease alive past it. On
SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from latlab.client import Client
from latlab.errors import ApiError
from latlab.runtimes import MAX_DEADLINE_S, parse_config
from latlab.runtimes.onnxruntime import OnnxRuntimeConfig
from latlab.schemas import JobState
from latlab.server.embedded import EmbeddedServer
from tests.factories import API_KEY, cnn_bytes, make_settings, register, wait_for
from tests.test_api_jobs import result_for, status_of

AUTH = {"Authorization": f"Bearer {API_KEY}"}


# --------------------------------------------------------------------------- the setting


def test_a_deadline_is_scaled_from_the_protocol_unless_given_and_is_bounded() -> None:
    default = OnnxRuntimeConfig()
    assert default.deadline_s == 600 + 10 * (1.0 + 2.0)
    assert OnnxRuntimeConfig(warmup_s=60, timed_s=240).deadline_s == 600 + 10 * 300
    assert OnnxRuntimeConfig(deadline_s=5).deadline_s == 5
    # stored with the job: what a stored config without one reads back as
    assert parse_config({"timed_s": 10}).model_dump()["deadline_s"] == 600 + 10 * 11
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
