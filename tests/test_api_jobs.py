"""The job queue over HTTP: creation and dedup, claims under leases, results, failures,
cancellation, expiry; and who may call what."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from latlab.client import AgentClient, Client
from latlab.errors import ApiError
from latlab.runtimes.onnxruntime import OnnxRuntimeConfig
from latlab.schemas import (
    ClaimedJob,
    DeviceRegistered,
    JobState,
    MeasurementIn,
    ModelOut,
    OpTiming,
    WarmupInfo,
)
from latlab.server.embedded import EmbeddedServer
from tests.factories import (
    API_KEY,
    ENROLL_KEY,
    cnn_bytes,
    cpu_descriptor,
    make_settings,
    register,
    wait_for,
)

Device = tuple[AgentClient, DeviceRegistered]


def result_for(claim: ClaimedJob, samples_ms: list[float] | None = None) -> MeasurementIn:
    return MeasurementIn(
        lease_token=claim.lease_token,
        runtime="onnxruntime",
        runtime_version="1.0",
        provider="CPUExecutionProvider",
        threads=1,
        protocol_version="1",
        agent_version="test",
        input_shapes={"input": [1, 3, 16, 16]},
        warmup=WarmupInfo(n=2, total_ms=2.0),
        samples_ms=samples_ms or [1.0, 2.0, 3.0, 4.0],
        timing_wall_s=0.01,
        ops=[
            OpTiming(
                node_name="b0.conv", op_type="Conv", dur_us=12.5, n=3, source_nodes=["b0.conv"]
            )
        ],
    )


def status_of(call: object) -> ApiError:
    with pytest.raises(ApiError) as err:
        call()  # type: ignore[operator]
    return err.value


# --------------------------------------------------------------------------- creating


def test_a_job_is_queued_for_a_model_and_a_device(
    client: Client, device: Device, model: ModelOut
) -> None:
    job = client.create_job(model.id, device_id=device[1].device_id)
    assert job.state == JobState.queued
    assert job.config == OnnxRuntimeConfig()
    assert job.online_matches == 1  # the device, heard from at registration
    assert client.job(job.id) == job.model_copy(update={"online_matches": None})


def test_an_identical_pending_request_returns_the_same_job(
    client: Client, device: Device, model: ModelOut
) -> None:
    first = client.create_job(model.id, device_id=device[1].device_id)
    again = client.create_job(model.id, device_id=device[1].device_id)
    other = client.create_job(
        model.id, device_id=device[1].device_id, config=OnnxRuntimeConfig(threads=2)
    )
    assert again.id == first.id and again.deduplicated
    assert other.id != first.id
    assert len(client.jobs()) == 2


def test_a_finished_job_is_not_reused_by_a_new_identical_request(
    client: Client, device: Device, model: ModelOut
) -> None:
    first = client.create_job(model.id, device_id=device[1].device_id)
    client.cancel_job(first.id)
    second = client.create_job(model.id, device_id=device[1].device_id)
    assert second.id != first.id and not second.deduplicated


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"model_id": "0" * 64, "selector": {}}, 404),
        ({"model_id": "MODEL", "device_id": "nope"}, 404),
        ({"model_id": "MODEL"}, 422),
        ({"model_id": "MODEL", "device_id": "DEVICE", "selector": {}}, 422),
        ({"model_id": "MODEL", "selector": {"favourite_colour": "red"}}, 422),
        ({"model_id": "MODEL", "selector": {}, "config": {"threads": 0}}, 422),
        ({"model_id": "MODEL", "selector": {}, "config": {"thread": 2}}, 422),
        ({"model_id": "not-a-sha", "selector": {}}, 422),
        ({"model_id": "MODEL", "selector": {}, "config": {"use_gpu": True}}, 422),
        (
            {
                "model_id": "MODEL",
                "selector": {},
                "config": {"runtime": "litert", "execution_provider": "CUDAExecutionProvider"},
            },
            422,
        ),
    ],
    ids=[
        "unknown-model",
        "unknown-device",
        "no-target",
        "two-targets",
        "unknown-selector-field",
        "zero-threads",
        "misspelt-option",
        "bad-model-id",
        "tflite-delegate-for-onnxruntime",
        "onnxruntime-provider-for-litert",
    ],
)
def test_a_bad_job_request_is_refused_and_nothing_is_queued(
    live_server: EmbeddedServer,
    client: Client,
    device: Device,
    model: ModelOut,
    body: dict,
    status: int,
) -> None:
    body = {
        k: (model.id if v == "MODEL" else device[1].device_id if v == "DEVICE" else v)
        for k, v in body.items()
    }
    with httpx.Client(
        base_url=live_server.url, headers={"Authorization": f"Bearer {API_KEY}"}
    ) as h:
        answer = h.post("/v1/jobs", json=body)
    assert answer.status_code == status
    assert answer.json()["error"]["message"]
    assert client.jobs() == []


def test_a_device_without_the_runtime_cannot_be_given_the_job(
    live_server: EmbeddedServer, client: Client, model: ModelOut
) -> None:
    agent_client, reg = register(live_server.url, runtimes=[])
    agent_client.close()
    err = status_of(lambda: client.create_job(model.id, device_id=reg.device_id))
    assert err.status == 422 and "cannot run" in err.message


def test_a_device_may_be_named_by_its_name_wherever_its_id_is_taken(
    live_server: EmbeddedServer, client: Client, model: ModelOut
) -> None:
    agent_client, reg = register(live_server.url, name="lab bench #2")
    agent_client.close()
    name = "lab bench #2"  # a space and a '#': one path segment all the same
    assert client.device(name).id == reg.device_id

    job = client.create_job(model.id, device_id=name)
    assert job.device_id == reg.device_id  # stored as the id
    by_id = client.create_job(model.id, device_id=reg.device_id)
    assert by_id.id == job.id and by_id.deduplicated
    assert [j.id for j in client.jobs(device_id=name)] == [job.id]
    assert client.measurements(device_id=name) == []

    err = status_of(lambda: client.jobs(device_id="no such bench"))
    assert err.status == 404 and "no device 'no such bench'" in err.message

    twin_a = register(live_server.url, name="twin")
    twin_b = register(live_server.url, name="twin")
    for agent, _ in (twin_a, twin_b):
        agent.close()
    ids = sorted(r.device_id for _, r in (twin_a, twin_b))
    for call in (
        lambda: client.device("twin"),
        lambda: client.create_job(model.id, device_id="twin"),
        lambda: client.measurements(device_id="twin"),
    ):
        err = status_of(call)
        assert err.status == 422 and "2 devices are named 'twin'" in err.message
        assert all(i in err.message for i in ids)

    client.revoke_device(name)
    assert client.jobs(device_id=name)[0].state == JobState.cancelled
    client.revoke_device(twin_a[1].device_id)  # a job by the name: the twin that can run it
    assert client.create_job(model.id, device_id="twin").device_id == twin_b[1].device_id


# --------------------------------------------------------------------------- claiming


def test_a_claim_without_work_waits_then_answers_no_content(device: Device) -> None:
    start = time.monotonic()
    assert device[0].claim(wait_s=0.3) is None
    assert time.monotonic() - start >= 0.25


def test_a_waiting_claim_gets_a_job_queued_meanwhile(
    client: Client, device: Device, model: ModelOut
) -> None:
    got: list[ClaimedJob | None] = []
    waiter = threading.Thread(target=lambda: got.append(device[0].claim(wait_s=20)))
    waiter.start()
    time.sleep(0.3)
    job = client.create_job(model.id, device_id=device[1].device_id)
    waiter.join(timeout=10)
    assert not waiter.is_alive()
    assert got[0] is not None and got[0].job_id == job.id


def test_a_job_pinned_to_one_device_is_not_given_to_another(
    live_server: EmbeddedServer, client: Client, device: Device, model: ModelOut
) -> None:
    other, _ = register(live_server.url, name="other")
    with other:
        job = client.create_job(model.id, device_id=device[1].device_id)
        assert other.claim(wait_s=0) is None
        claimed = device[0].claim(wait_s=0)
        assert claimed is not None and claimed.job_id == job.id


def test_a_selector_job_goes_only_to_a_matching_device(
    live_server: EmbeddedServer, client: Client, model: ModelOut
) -> None:
    arm, _ = register(live_server.url, name="arm", cpu_arch="aarch64", labels={"lab": "b"})
    x86, x86_reg = register(live_server.url, name="x86", cpu_arch="x86_64", labels={"lab": "a"})
    with arm, x86:
        job = client.create_job(model.id, selector={"cpu_arch": "x86_64", "labels.lab": "a"})
        assert arm.claim(wait_s=0) is None
        claimed = x86.claim(wait_s=0)
        assert claimed is not None and claimed.job_id == job.id
        assert client.job(job.id).claimed_by == x86_reg.device_id


def test_a_claim_looks_past_more_than_a_page_of_jobs_it_cannot_run(
    live_server: EmbeddedServer, client: Client, model: ModelOut
) -> None:
    """The oldest job is tried alone, then pages of CLAIM_PAGE: 20 jobs for another lab ahead
    of the one this device may run span the first row and two pages."""
    x86, _ = register(live_server.url, name="x86", labels={"lab": "a"})
    with x86:
        for seed in range(20):
            client.create_job(
                model.id, selector={"labels.lab": "b"}, config=OnnxRuntimeConfig(seed=seed)
            )
        mine = client.create_job(model.id, selector={"labels.lab": "a"})
        claimed = x86.claim(wait_s=0)
        assert claimed is not None and claimed.job_id == mine.id


def test_a_device_holds_one_job_at_a_time(client: Client, device: Device, tmp_path: Path) -> None:
    ids = [
        client.create_job(
            client.upload_model(f"m{i}.onnx", data=cnn_bytes(seed=i)).id,
            device_id=device[1].device_id,
        ).id
        for i in range(2)
    ]
    first = device[0].claim(wait_s=0)
    second = device[0].claim(wait_s=0)
    assert first is not None and second is not None
    states = {j.id: j.state for j in client.jobs()}
    assert list(states.values()).count(JobState.leased) == 1
    assert states[second.job_id] == JobState.leased
    assert set(ids) == set(states)


# --------------------------------------------------------------------------- results


@pytest.fixture
def claimed(client: Client, device: Device, model: ModelOut) -> Iterator[ClaimedJob]:
    client.create_job(model.id, device_id=device[1].device_id)
    claim = device[0].claim(wait_s=0)
    assert claim is not None
    yield claim


def test_a_result_is_stored_with_its_statistics_samples_and_ops(
    client: Client, device: Device, claimed: ClaimedJob
) -> None:
    stored = device[0].upload_result(claimed.job_id, result_for(claimed))
    job = client.job(claimed.job_id)
    assert job.state == JobState.done and job.measurement_id == stored.id
    full = client.measurement(stored.id)
    assert full.stats.median_ms == 2.5 and full.stats.n == 4
    assert full.samples_ms == [1.0, 2.0, 3.0, 4.0]
    assert full.ops is not None and full.ops[0].op_type == "Conv"
    assert full.device_id == device[1].device_id
    assert full.config == OnnxRuntimeConfig()


def test_a_repeated_result_upload_is_a_no_op(
    client: Client, device: Device, claimed: ClaimedJob
) -> None:
    first = device[0].upload_result(claimed.job_id, result_for(claimed))
    again = device[0].upload_result(claimed.job_id, result_for(claimed))
    assert again.id == first.id
    assert len(client.measurements()) == 1


def test_a_result_with_a_wrong_lease_token_is_refused(
    client: Client, device: Device, claimed: ClaimedJob
) -> None:
    wrong = claimed.model_copy(update={"lease_token": "f" * 32})
    err = status_of(lambda: device[0].upload_result(claimed.job_id, result_for(wrong)))
    assert err.status == 409 and "lease" in err.message
    assert client.measurements() == []
    assert client.job(claimed.job_id).state == JobState.leased


def test_a_result_for_an_unknown_job_is_not_found(device: Device, claimed: ClaimedJob) -> None:
    err = status_of(lambda: device[0].upload_result("0" * 32, result_for(claimed)))
    assert err.status == 404


def test_a_result_from_another_device_is_refused(
    live_server: EmbeddedServer, client: Client, claimed: ClaimedJob
) -> None:
    other, _ = register(live_server.url, name="other")
    with other:
        err = status_of(lambda: other.upload_result(claimed.job_id, result_for(claimed)))
    assert err.status == 409
    assert client.measurements() == []


def test_a_result_with_non_finite_samples_is_refused(
    live_server: EmbeddedServer, client: Client, device: Device, claimed: ClaimedJob
) -> None:
    body = result_for(claimed).model_dump(mode="json")
    body["samples_ms"] = [1.0, -1.0]
    token = device[0]._http.headers["Authorization"]
    with httpx.Client(base_url=live_server.url, headers={"Authorization": token}) as h:
        answer = h.post(f"/v1/agent/jobs/{claimed.job_id}/result", json=body)
    assert answer.status_code == 422
    assert client.measurements() == []


@pytest.mark.parametrize(
    "change",
    [
        {"samples_ms": []},
        {"reported": {"reported_by": "benchmark_model", "count": 4, "mean_ms": 2.5}},
        {"samples_ms": [], "reported": {"reported_by": "x", "count": 0, "mean_ms": 2.5}},
    ],
    ids=["neither-samples-nor-reported", "both", "reported-zero-runs"],
)
def test_a_result_has_samples_or_reported_statistics_never_both_or_neither(
    live_server: EmbeddedServer,
    client: Client,
    device: Device,
    claimed: ClaimedJob,
    change: dict[str, object],
) -> None:
    body = result_for(claimed).model_dump(mode="json") | change
    token = device[0]._http.headers["Authorization"]
    with httpx.Client(base_url=live_server.url, headers={"Authorization": token}) as h:
        answer = h.post(f"/v1/agent/jobs/{claimed.job_id}/result", json=body)
    assert answer.status_code == 422 and answer.json()["error"]["message"]
    assert client.measurements() == []


def test_a_failure_report_ends_the_job_with_its_error_text(
    client: Client, device: Device, claimed: ClaimedJob
) -> None:
    device[0].report_failure(claimed.job_id, claimed.lease_token, "Conv: kernel not supported")
    job = client.job(claimed.job_id)
    assert job.state == JobState.failed and job.error == "Conv: kernel not supported"
    device[0].report_failure(claimed.job_id, claimed.lease_token, "Conv: kernel not supported")


def test_a_released_job_goes_back_to_the_queue_without_using_an_attempt(
    client: Client, device: Device, claimed: ClaimedJob
) -> None:
    device[0].release(claimed.job_id, claimed.lease_token)
    job = client.job(claimed.job_id)
    assert job.state == JobState.queued and job.attempts == 0
    again = device[0].claim(wait_s=0)
    assert again is not None and again.job_id == claimed.job_id
    assert again.lease_token != claimed.lease_token


def test_a_result_after_cancellation_is_refused(
    client: Client, device: Device, claimed: ClaimedJob
) -> None:
    assert client.cancel_job(claimed.job_id).state == JobState.cancelled
    err = status_of(lambda: device[0].upload_result(claimed.job_id, result_for(claimed)))
    assert err.status == 409
    err = status_of(lambda: device[0].heartbeat(claimed.job_id, claimed.lease_token))
    assert err.status == 409
    assert client.measurements() == []


def test_a_finished_job_cannot_be_cancelled(
    client: Client, device: Device, claimed: ClaimedJob
) -> None:
    device[0].upload_result(claimed.job_id, result_for(claimed))
    err = status_of(lambda: client.cancel_job(claimed.job_id))
    assert err.status == 409 and "done" in err.message


# --------------------------------------------------------------------------- leases


@pytest.fixture
def short_lease_server(tmp_path: Path, sqlite_url: str) -> Iterator[EmbeddedServer]:
    settings = make_settings(tmp_path, sqlite_url, lease_s=0.4, reap_every_s=0.1)
    with EmbeddedServer(settings) as server:
        yield server


def test_an_expired_lease_is_requeued_and_then_failed_after_max_attempts(
    short_lease_server: EmbeddedServer,
) -> None:
    with Client(short_lease_server.url, API_KEY) as client:
        agent_client, reg = register(short_lease_server.url)
        with agent_client:
            model = client.upload_model("m.onnx", data=cnn_bytes())
            job = client.create_job(model.id, device_id=reg.device_id, max_attempts=2)
            first = agent_client.claim(wait_s=0)
            assert first is not None
            wait_for(lambda: client.job(job.id).state == JobState.queued)
            requeued = client.job(job.id)
            assert requeued.attempts == 1 and "lease expired" in (requeued.error or "")
            second = agent_client.claim(wait_s=0)
            assert second is not None
            err = status_of(lambda: agent_client.upload_result(job.id, result_for(first)))
            assert err.status == 409
            wait_for(lambda: client.job(job.id).state == JobState.failed)
            failed = client.job(job.id)
            assert failed.attempts == 2 and "gave up after 2 attempts" in (failed.error or "")


def test_heartbeats_keep_a_lease_alive(tmp_path: Path, sqlite_url: str) -> None:
    # a lease of 1 s renewed every 0.15 s: a heartbeat held up by a busy host (a loaded CI
    # machine stalls a request for some 0.3 s at times) still lands inside its lease
    settings = make_settings(tmp_path, sqlite_url, lease_s=1.0, reap_every_s=0.1)
    with EmbeddedServer(settings) as server, Client(server.url, API_KEY) as client:
        agent_client, reg = register(server.url)
        with agent_client:
            model = client.upload_model("m.onnx", data=cnn_bytes())
            job = client.create_job(model.id, device_id=reg.device_id)
            claim = agent_client.claim(wait_s=0)
            assert claim is not None
            for _ in range(20):  # 3 s, 3 leases
                agent_client.heartbeat(claim.job_id, claim.lease_token)
                time.sleep(0.15)
            assert client.job(job.id).state == JobState.leased
            agent_client.upload_result(claim.job_id, result_for(claim))
            assert client.job(job.id).state == JobState.done


# --------------------------------------------------------------------------- who may call


def test_registration_needs_the_enrollment_key(live_server: EmbeddedServer, client: Client) -> None:
    with AgentClient(live_server.url) as agent_client:
        err = status_of(lambda: agent_client.register("wrong", "d", cpu_descriptor()))
        assert err.status == 401
        err = status_of(lambda: agent_client.register(API_KEY, "d", cpu_descriptor()))
        assert err.status == 401
    assert client.devices() == []


def test_a_device_token_cannot_make_user_calls(live_server: EmbeddedServer, device: Device) -> None:
    token = device[0]._http.headers["Authorization"]
    with httpx.Client(base_url=live_server.url, headers={"Authorization": token}) as h:
        assert h.get("/v1/jobs").status_code == 403
        assert h.post("/v1/jobs", json={"model_id": "0" * 64, "selector": {}}).status_code == 403
        assert h.get("/v1/measurements").status_code == 403


def test_an_api_key_cannot_make_agent_calls(live_server: EmbeddedServer) -> None:
    with httpx.Client(
        base_url=live_server.url, headers={"Authorization": f"Bearer {API_KEY}"}
    ) as h:
        assert h.post("/v1/agent/claim").status_code == 403
        assert h.post("/v1/agent/heartbeat", json={}).status_code == 403


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer nope", "Basic dXNlcjpwYXNz"])
def test_agent_calls_without_a_valid_token_are_unauthorised(
    live_server: EmbeddedServer, header: str | None
) -> None:
    headers = {"Authorization": header} if header else {}
    with httpx.Client(base_url=live_server.url, headers=headers) as h:
        answer = h.post("/v1/agent/claim")
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthorized"


def test_devices_are_listed_online_then_offline(tmp_path: Path, sqlite_url: str) -> None:
    settings = make_settings(tmp_path, sqlite_url, offline_after_s=0.3)
    with EmbeddedServer(settings) as server, Client(server.url, API_KEY) as client:
        agent_client, reg = register(server.url)
        with agent_client:
            assert client.device(reg.device_id).online
            time.sleep(0.4)
            assert not client.device(reg.device_id).online
            agent_client.heartbeat()
            assert client.device(reg.device_id).online


def test_healthz_is_open_and_reports_the_schema_revision(live_server: EmbeddedServer) -> None:
    answer = httpx.get(f"{live_server.url}/healthz")
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "ok" and body["db_revision"] == body["head"] != ""


def test_the_openapi_document_describes_every_route(live_server: EmbeddedServer) -> None:
    spec = httpx.get(f"{live_server.url}/openapi.json").json()
    assert {"/v1/jobs", "/v1/models", "/v1/agent/claim", "/v1/measurements"} <= set(spec["paths"])
    assert ENROLL_KEY not in str(spec)


def test_concurrent_repeats_of_one_result_store_one_row(server_on_both: EmbeddedServer) -> None:
    with Client(server_on_both.url, API_KEY) as client:
        agent_client, reg = register(server_on_both.url)
        with agent_client:
            model = client.upload_model("m.onnx", data=cnn_bytes())
            client.create_job(model.id, device_id=reg.device_id)
            claim = agent_client.claim(wait_s=0)
            assert claim is not None
            body = result_for(claim)
            answers: list[int] = []

            def upload() -> None:
                answers.append(agent_client.upload_result(claim.job_id, body).id)

            threads = [threading.Thread(target=upload) for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert len(answers) == 8 and len(set(answers)) == 1
            assert len(client.measurements()) == 1
