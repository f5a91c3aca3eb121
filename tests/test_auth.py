"""Who may do what: read-only and read-write API keys, device tokens that cannot act as users
(and keys that cannot act as devices), and revocation — a revoked device is locked out, its
leased job goes back to the queue and the jobs pinned to it are cancelled."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from latlab.client import AgentClient, Client
from latlab.errors import ApiError
from latlab.schemas import DeviceRegistered, JobState, ModelOut
from latlab.server.embedded import EmbeddedServer
from tests.factories import API_KEY, READ_API_KEY, register

WRITES = [
    ("POST", "/v1/models"),
    ("POST", "/v1/jobs"),
    ("POST", "/v1/jobs/some-job/cancel"),
    ("POST", "/v1/datasets"),
    ("POST", "/v1/datasets/import"),
    ("POST", "/v1/luts"),
    ("POST", "/v1/predictors"),
    ("POST", "/v1/predictors/some-predictor/current"),
    ("POST", "/v1/devices/some-device/revoke"),
]
READS = ["/v1/devices", "/v1/models", "/v1/jobs", "/v1/measurements", "/v1/datasets", "/v1/luts"]


def test_a_read_only_key_reads_and_queries_but_changes_nothing(
    live_server: EmbeddedServer, client: Client, model: ModelOut
) -> None:
    with httpx.Client(
        base_url=live_server.url, headers={"Authorization": f"Bearer {READ_API_KEY}"}
    ) as h:
        for path in READS:
            assert h.get(path).status_code == 200, path
        assert h.get(f"/v1/models/{model.id}").status_code == 200
        assert h.get(f"/v1/models/{model.id}/content").status_code == 200
        # a predict query is a read: it gets past auth (and fails on the missing device)
        predicted = h.post(
            "/v1/predict", json={"device_id": "nope", "space": "nb201", "archs": [0]}
        )
        assert predicted.status_code == 404, predicted.text
        for method, path in WRITES:
            answer = h.request(method, path, json={})
            assert answer.status_code == 403, (path, answer.text)
            assert "read-only" in answer.json()["error"]["message"]
    assert client.jobs() == [] and len(client.models()) == 1 and client.datasets() == []


def test_keys_and_device_tokens_stay_in_their_lanes(
    live_server: EmbeddedServer, device: tuple[AgentClient, DeviceRegistered]
) -> None:
    _, registered = device
    url = live_server.url
    as_device = httpx.get(f"{url}/v1/jobs", headers={"Authorization": f"Bearer {registered.token}"})
    assert as_device.status_code == 403 and "device token" in as_device.json()["error"]["message"]
    for key in (API_KEY, READ_API_KEY):
        claim = httpx.post(f"{url}/v1/agent/claim", headers={"Authorization": f"Bearer {key}"})
        assert claim.status_code == 403 and "API key" in claim.json()["error"]["message"]


def test_a_revoked_device_is_locked_out_and_its_jobs_move_on(
    live_server: EmbeddedServer, client: Client, model: ModelOut, tmp_path: Path
) -> None:
    agent, registered = register(live_server.url, name="doomed")
    other_agent, _ = register(live_server.url, name="other")
    with agent, other_agent:
        leased = client.create_job(model.id, selector={"hostname": "test-host"})
        claim = agent.claim(wait_s=0)
        assert claim is not None and claim.job_id == leased.id
        pinned = client.create_job(model.id, device_id=registered.device_id)

        with Client(live_server.url, READ_API_KEY) as reader, pytest.raises(ApiError) as denied:
            reader.revoke_device(registered.device_id)
        assert denied.value.status == 403

        revoked = client.revoke_device(registered.device_id)
        assert revoked.online is False and client.revoke_device(registered.device_id).id == (
            registered.device_id
        )
        requeued, cancelled = client.job(leased.id), client.job(pinned.id)
        assert requeued.state == JobState.queued and requeued.attempts == 0
        assert cancelled.state == JobState.cancelled and "revoked" in (cancelled.error or "")

        for call in (
            lambda: agent.claim(wait_s=0),
            agent.heartbeat,
            lambda: agent.release(claim.job_id, claim.lease_token),
        ):
            with pytest.raises(ApiError) as locked_out:
                call()
            assert locked_out.value.status == 401
        # the queue moves on: another device takes the requeued job
        taken = other_agent.claim(wait_s=0)
        assert taken is not None and taken.job_id == leased.id

    with pytest.raises(ApiError) as unknown:
        client.revoke_device("no-such-device")
    assert unknown.value.status == 404
