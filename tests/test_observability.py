"""What an operator watches: /healthz (the database answers and is at head, else 503),
/metrics in Prometheus' text format (jobs, queue, devices, claims, results, timings, HTTP by
route), and logs that carry their context and never a secret nor a terminal escape."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from alembic import command

from latlab.client import Client
from latlab.logs import JsonFormatter, TextFormatter, configure_logging, redact
from latlab.runtimes.onnxruntime import OnnxRuntimeConfig
from latlab.schemas import JobState
from latlab.server.config import Settings
from latlab.server.db import alembic_config, create_db_engine
from latlab.server.embedded import EmbeddedServer, free_port
from tests.factories import API_KEY, ENROLL_KEY, cnn_bytes, scrape, scrape_families
from tests.test_e2e import start_agent

FAST = OnnxRuntimeConfig(
    protocol="fixed", warmup_runs=1, warmup_s=0, timed_runs=3, timed_s=0, profile_ops=False
)
#: Every family /metrics exposes, with its type and labels (``le`` aside): what dashboards query.
EXPOSED = {
    "latlab_jobs": ("gauge", {"state"}),
    "latlab_queue_depth": ("gauge", set()),
    "latlab_devices_online": ("gauge", set()),
    "latlab_claims_waiting": ("gauge", set()),
    "latlab_claims": ("counter", {"outcome"}),
    "latlab_results": ("counter", set()),
    "latlab_predict_archs": ("counter", set()),
    "latlab_http_requests": ("counter", {"method", "route", "status"}),
    "latlab_http_request_seconds": ("histogram", {"route"}),
    "latlab_measurement_seconds": ("histogram", {"runtime"}),
    "latlab_predict_seconds": ("histogram", {"predictor"}),
}
LATLAB = str(Path(sys.executable).with_name("latlab"))
HTTP_LIBRARIES = ("httpx", "httpcore")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """The test may call ``configure_logging``: the root's handlers and the levels come back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in HTTP_LIBRARIES}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, saved in levels.items():
        logging.getLogger(name).setLevel(saved)


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
        families = scrape_families(live_server.url)
        after = scrape(live_server.url)
    finally:
        agent.close()
    exposed = {f.name: f for f in families if not f.name.endswith("_created")}
    assert {name: f.type for name, f in exposed.items()} == {n: t for n, (t, _) in EXPOSED.items()}
    for name, (_, labels) in EXPOSED.items():
        assert all(set(s.labels) - {"le"} == labels for s in exposed[name].samples), name
    assert after['latlab_jobs{state="done"}'] == 2 and after['latlab_jobs{state="queued"}'] == 0
    assert after["latlab_devices_online"] == 1
    assert after['latlab_claims_total{outcome="job"}'] == 2
    assert after["latlab_results_total"] == 2
    assert after['latlab_measurement_seconds_count{runtime="onnxruntime"}'] == 2
    assert after['latlab_measurement_seconds_bucket{le="+Inf",runtime="onnxruntime"}'] == 2
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
    live_server: EmbeddedServer, client: Client, tmp_path: Path, restore_logging: None
) -> None:
    stream = io.StringIO()
    configure_logging(logging.DEBUG, json_lines=True)  # what `latlab --log-json -vv` sets up
    logging.getLogger().handlers[0].stream = stream  # type: ignore[attr-defined]
    agent = start_agent(live_server.url, tmp_path)
    model_path = tmp_path / "m.onnx"
    model_path.write_bytes(cnn_bytes())
    model = client.upload_model(model_path)
    job = client.create_job(model.id, device_id=client.devices()[0].id, config=FAST)
    assert client.wait_jobs([job.id], timeout_s=60)[0].state == JobState.done
    token = json.loads((tmp_path / "e2e.json").read_text())["token"]
    agent.close()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert any(line.get("job_id") == job.id for line in lines)  # the context is there
    for secret in (token, API_KEY, ENROLL_KEY):
        assert secret not in stream.getvalue()


def _server_log(tmp_path: Path, *options: str) -> str:
    """What ``latlab [options] server`` writes to stderr from its start to a Ctrl-C, with one
    request served in between."""
    port = free_port()
    proc = subprocess.Popen(
        [LATLAB, *options, "server", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "LATLAB_DATA_DIR": str(tmp_path / "server")},
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "the server did not start"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    return err


@pytest.mark.slow
def test_the_servers_uvicorn_lines_carry_no_colour_codes_in_text_or_json(tmp_path: Path) -> None:
    text = _server_log(tmp_path)
    assert "Uvicorn running on http://127.0.0.1" in text and "Finished server process" in text
    assert "\x1b" not in text and "color_message" not in text, text

    json_lines = _server_log(tmp_path, "--log-json")
    lines = [json.loads(line) for line in json_lines.splitlines()]
    messages = [line["message"] for line in lines if line["logger"].startswith("uvicorn")]
    assert any(m.startswith("Uvicorn running on http://127.0.0.1") for m in messages), lines
    assert not any("color_message" in line for line in lines)
    assert "\x1b" not in json_lines and "\\u001b" not in json_lines, json_lines


def test_escapes_in_any_field_are_not_printed() -> None:
    record = logging.makeLogRecord(
        {"msg": "\x1b[31mred\x1b[0m", "name": "x", "device_name": "\x1b]0;title\x07pc\x1b[2J"}
    )
    assert TextFormatter().format(record).endswith("red [device_name=pc]")
    line = json.loads(JsonFormatter().format(record))
    assert (line["message"], line["device_name"]) == ("red", "pc")


def test_verbose_leaves_the_http_requests_out_and_very_verbose_shows_them(
    live_server: EmbeddedServer,
) -> None:
    def stderr(*options: str) -> str:
        env = {**os.environ, "LATLAB_SERVER_URL": live_server.url, "LATLAB_API_KEY": API_KEY}
        result = subprocess.run(
            [LATLAB, *options, "devices", "list"], capture_output=True, text=True, env=env
        )
        assert result.returncode == 0, result.stderr
        return result.stderr

    assert "HTTP Request" not in stderr("-v")
    assert "httpx: HTTP Request: GET" in stderr("-vv")
