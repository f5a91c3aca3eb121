"""Runtimes as plug-ins: the registry finds a runtime another package declares with an entry
point, a broken or clashing one is skipped with a warning, and a plug-in's runtime goes through
the whole lab (a live server, an agent that loads its runner, a measurement stored under its
name) without a line of latlab changed."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from latlab import plugins
from latlab.client import Client
from latlab.runtimes import ENTRY_POINT_GROUP, parse_config, runtimes
from latlab.runtimes import registry as runtime_registry
from latlab.schemas import JobState, RuntimeInfo
from latlab.server.embedded import EmbeddedServer
from tests.factories import cnn_bytes, register
from tests.plugins.ort_basic import SPEC as ORT_BASIC
from tests.plugins.ort_basic import OrtBasicConfig

REPO = Path(__file__).resolve().parents[1]


def install_entry_points(site: Path, lines: list[str], group: str = ENTRY_POINT_GROUP) -> Path:
    """What ``pip install`` of a package with these entry points leaves on ``sys.path``."""
    info = site / "toy_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n" + "\n".join(lines) + "\n")
    return site


def test_an_entry_point_adds_a_runtime_and_a_broken_one_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    site = install_entry_points(
        tmp_path,
        [
            "onnxruntime-basic = tests.plugins.ort_basic:SPEC",
            "missing = tests.plugins.no_such_module:SPEC",
            "clash = latlab.runtimes.onnxruntime:SPEC",
        ],
    )
    monkeypatch.setattr(
        runtime_registry.REGISTRY, "_found", None
    )  # what this test finds stays here
    monkeypatch.syspath_prepend(str(site))
    with caplog.at_level(logging.WARNING, logger=plugins.__name__):
        found = runtimes()

    assert list(found) == ["onnxruntime", "litert", "benchmark_model", "onnxruntime-basic"]
    assert found["onnxruntime-basic"].runner == "tests.plugins.ort_basic:OrtBasicRunner"
    warnings = " ".join(r.getMessage() for r in caplog.records)
    assert "no_such_module" in warnings and "onnxruntime is already taken" in warnings


def test_an_unknown_runtime_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="runtime: one of onnxruntime, litert, benchmark_model"):
        parse_config({"runtime": "openvino"})


PLUGIN_LAB = """
import sys
from pathlib import Path

from latlab.agent.main import background_agent
from latlab.client import Client
from latlab.schemas import JobState
from latlab.server.embedded import EmbeddedServer
from tests.factories import API_KEY, cnn_bytes, make_settings
from tests.plugins.ort_basic import OrtBasicConfig
from tests.test_e2e import agent_settings

tmp = Path(sys.argv[1])
server = EmbeddedServer(make_settings(tmp, f"sqlite:///{tmp / 'lab.db'}")).start()
try:
    with background_agent(agent_settings(server.url, tmp), None), Client(server.url, API_KEY) as c:
        device = c.devices()[0]
        print("advertised", [r.name for r in device.descriptor.runtimes])
        model = c.upload_model("m.onnx", data=cnn_bytes())
        config = OrtBasicConfig(protocol="fixed", warmup_runs=2, warmup_s=0, timed_runs=5, timed_s=0, profile_runs=2)
        job = c.create_job(model.id, device_id=device.id, config=config)
        [done] = c.wait_jobs([job.id], timeout_s=120)
        assert done.state == JobState.done, done.error
        m = c.measurement(done.measurement_id)
        print("measured", m.runtime, m.config.graph_optimization.value, len(m.ops) > 0)
finally:
    server.stop()
"""


def test_a_plug_in_runtime_is_measured_end_to_end(tmp_path: Path) -> None:
    """A fresh process with the plug-in installed: the agent advertises it and times a job for
    it, the server accepts its config and stores the measurement under its name."""
    site = install_entry_points(
        tmp_path / "site", ["onnxruntime-basic = tests.plugins.ort_basic:SPEC"]
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    done = subprocess.run(
        [sys.executable, "-c", PLUGIN_LAB, str(tmp_path)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "'onnxruntime-basic'" in done.stdout.split("advertised", 1)[1], done.stdout
    assert "measured onnxruntime-basic basic True" in done.stdout, done.stdout


def test_jobs_of_a_plug_in_that_is_gone_still_read_back_and_wait(
    live_server: EmbeddedServer, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job queued while the plug-in was installed lists as it was stored after it is
    removed, and no device is handed it until the plug-in is back."""
    advertised = RuntimeInfo(
        name="onnxruntime-basic", version="1", providers=["CPUExecutionProvider"]
    )
    agent_client, _ = register(live_server.url, runtimes=[advertised])
    model = client.upload_model("m.onnx", data=cnn_bytes())
    monkeypatch.setattr(
        runtime_registry.REGISTRY, "_found", {**runtimes(), ORT_BASIC.name: ORT_BASIC}
    )
    job = client.create_job(model.id, selector={}, config=OrtBasicConfig(threads=2))
    monkeypatch.setattr(runtime_registry.REGISTRY, "_found", None)  # the plug-in uninstalled

    [listed] = [j for j in client.jobs() if j.id == job.id]
    assert listed.config.runtime == "onnxruntime-basic" and listed.config.threads == 2
    assert listed.config.model_dump()["graph_optimization"] == "basic"
    with agent_client:
        assert agent_client.claim(wait_s=0) is None
    assert client.job(job.id).state == JobState.queued
