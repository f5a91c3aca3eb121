"""What an operator watches: /healthz (the database answers and is at head, else 503),
/metrics in Prometheus' text format (jobs, queue, devices, claims, results, timings, HTTP by
route), and logs that carry their context and never a secret."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import httpx
from alembic import command

from latlab.client import Client
from latlab.logs import JsonFormatter, TextFormatter, configure_logging, redact
from latlab.runtimes.onnxruntime import OnnxRuntimeConfig
from latlab.schemas import JobState
from latlab.server.config import Settings
from latlab.server.db import alembic_config, create_db_engine
from latlab.server.embedded import EmbeddedServer
from tests.factories import API_KEY, ENROLL_KEY, cnn_bytes, scrape
from tests.test_e2e import start_agent

FAST = OnnxRuntimeConfig(
    protocol="fixed", warmup_runs=1, warmup_s=0, timed_runs=3, timed_s=0, profile_ops=False
)


def test_metrics_count_what_happened_by_route_not_by_id(
    live_server: EmbeddedServer, client: Client, tmp_path: Path
) -> None:
    before = scrape(live_server.url)
    assert before["latlab_queue_depth"] == 0 and before["latlab_devices_online"] == 0
    agent = start_agent(live_server.url, tmp_path)
    try:
        model_path = tmp_path / "m.onnx"
        model_path.write_bytes(cnn_bytes())
        model = client.upload_model(model_path)
        device = client.devices()[0]
        jobs = [client.create_job(model.id, device_id=device.id, config=FAST)]
        jobs.append(
            client.create_job(
                model.id, device_id=device.id, config=FAST.model_copy(update={"seed": 1})
            )
        )
        done = client.wait_jobs([j.id for j in jobs], timeout_s=60)
        assert all(j.state == JobState.done for j in done)
        client.job(jobs[0].id)
        after = scrape(live_server.url)
    finally:
        agent.close()
    assert after['latlab_jobs{state="done"}'] == 2 and after['latlab_jobs{state="queued"}'] == 0
    assert after["latlab_devices_online"] == 1
    assert after['latlab_claims_total{outcome="job"}'] == 2
    assert after["latlab_results_total"] == 2
    assert after['latlab_measurement_seconds_count{runtime="onnxruntime"}'] == 2
    assert after['latlab_measurement_seconds_bucket{runtime="onnxruntime",le="+Inf"}'] == 2
    route = 'latlab_http_requests_total{method="GET",route="/v1/jobs/{job_id}",status="200"}'
    assert after[route] >= 1  # the job's route template, never its id
    assert not any(j.id in key for key in after for j in jobs)
    created = 'latlab_http_requests_total{method="POST",route="/v1/jobs",status="201"}'
    assert after[created] == 2


def test_healthz_answers_503_when_the_schema_is_behind_head(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    settings = Settings(
        data_dir=tmp_path, database_url=url, api_keys=[API_KEY], enroll_key=ENROLL_KEY
    )
    with EmbeddedServer(settings) as server:
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        engine = create_db_engine(url)
        command.downgrade(alembic_config(engine), "-1")  # an old schema under a new server
        engine.dispose()
        answer = httpx.get(f"{server.url}/healthz")
    assert answer.status_code == 503
    assert "not at head" in answer.json()["error"]["message"]


def test_logs_carry_their_context_and_never_a_secret() -> None:
    token = "ldt_" + "s3cret" * 6
    record = logging.makeLogRecord(
        {
            "name": "latlab.server.jobs",
            "levelno": logging.INFO,
            "levelname": "INFO",
            "msg": "claim with Authorization: Bearer %s",
            "args": ("api-key-123",),
            "job_id": "j1",
            "device_id": "d1",
            "note": f"token {token}",
        }
    )
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "claim with Authorization: Bearer ***"
    assert (line["job_id"], line["device_id"], line["note"]) == ("j1", "d1", "token ***")
    assert line["level"] == "INFO" and line["logger"] == "latlab.server.jobs" and "ts" in line
    text = TextFormatter().format(record)
    assert "job_id=j1" in text and "api-key-123" not in text and token not in text
    assert redact(f"x {token} y") == "x *** y"


def test_a_registration_and_a_job_log_no_token_or_key(
    live_server: EmbeddedServer, client: Client, tmp_path: Path
) -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    configure_logging(logging.DEBUG, json_lines=True)  # what `latlab --log-json -v` sets up
    handler = root.handlers[0]
    handler.stream = stream  # type: ignore[attr-defined]
    try:
        agent = start_agent(live_server.url, tmp_path)
        model_path = tmp_path / "m.onnx"
        model_path.write_bytes(cnn_bytes())
        model = client.upload_model(model_path)
        job = client.create_job(model.id, device_id=client.devices()[0].id, config=FAST)
        assert client.wait_jobs([job.id], timeout_s=60)[0].state == JobState.done
        token = json.loads((tmp_path / "e2e.json").read_text())["token"]
        agent.close()
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert any(line.get("job_id") == job.id for line in lines)  # the context is there
    for secret in (token, API_KEY, ENROLL_KEY):
        assert secret not in stream.getvalue()
