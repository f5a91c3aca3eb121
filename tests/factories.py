"""Factories: plain functions with keyword overrides."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, Metric
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from latlab.client import AgentClient
from latlab.demo_models import CnnSpec, make_cnn
from latlab.schemas import DeviceDescriptor, DeviceRegistered, RuntimeInfo
from latlab.server.config import Settings

API_KEY = "test-api-key"
READ_API_KEY = "test-read-only-key"
ENROLL_KEY = "test-enroll-key"
#: A NAS-Bench-201 cell with three 3x3 convs and no dead op (NAS-Bench-201 index 1): its exported
#: TFLite model has 52 CONV_2D ops.
NB201_CONV_CELL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


def make_settings(tmp_path: Path, database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": tmp_path / "data",
        "database_url": database_url,
        "api_keys": [SecretStr(API_KEY)],
        "read_api_keys": [SecretStr(READ_API_KEY)],
        "enroll_key": SecretStr(ENROLL_KEY),
        "lease_s": 30.0,
        "reap_every_s": 0.2,
        # the device canary off: tests count jobs; tests/test_canary.py turns it on
        "canary_every_jobs": 0,
        "canary_every_s": 0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def cpu_descriptor(**overrides: object) -> DeviceDescriptor:
    values: dict[str, object] = {
        "hostname": "test-host",
        "cpu_model": "Test CPU",
        "cpu_arch": "x86_64",
        "cpu_cores": 2,
        "os": "Linux",
        "runtimes": [
            RuntimeInfo(name="onnxruntime", version="1.0", providers=["CPUExecutionProvider"])
        ],
    }
    values.update(overrides)
    return DeviceDescriptor(**values)  # type: ignore[arg-type]


def register(
    url: str, name: str = "dev", **descriptor: object
) -> tuple[AgentClient, DeviceRegistered]:
    agent_client = AgentClient(url)
    registered = agent_client.register(ENROLL_KEY, name, cpu_descriptor(**descriptor))
    return agent_client, registered


def cnn_bytes(seed: int = 0, resolution: int = 16) -> bytes:
    spec = CnnSpec(f"t{seed}", resolution=resolution, channels=(8, 8), strides=(1, 2), seed=seed)
    return make_cnn(spec).SerializeToString()


def wait_for(predicate: Callable[[], bool], timeout_s: float = 20.0) -> None:
    """Poll until ``predicate()`` is true; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


#: ../shared beside the checkout: the design, fixtures and published data CI provides.
SHARED = Path(__file__).resolve().parents[2] / "shared"


def shared_path(relative: str) -> Path:
    """A file or folder of ../shared; missing, the test skips with the reason, or fails
    under CI (CI=true), where ../shared is part of the checkout it sees."""
    path = SHARED / relative
    if not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs {path} (../shared beside the checkout)")
        pytest.skip(f"no {path}: ../shared is not beside this checkout")
    return path


def scrape_families(url: str) -> list[Metric]:
    """GET /metrics and read it with Prometheus' own parser: a malformed line raises, and
    every family has its HELP and TYPE."""
    answer = httpx.get(f"{url}/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == CONTENT_TYPE_PLAIN_0_0_4
    families = list(text_string_to_metric_families(answer.text))
    assert all(f.documentation and f.type != "unknown" for f in families), answer.text
    return families


def scrape(url: str) -> dict[str, float]:
    """GET /metrics: ``'name{labels}'`` -> value, the labels sorted by name
    (``'latlab_measurement_seconds_bucket{le="+Inf",runtime="onnxruntime"}'``)."""
    return {
        sample.name + _labels(sample.labels): sample.value
        for family in scrape_families(url)
        for sample in family.samples
    }


def _labels(labels: dict[str, str]) -> str:
    pairs = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return "{" + pairs + "}" if pairs else ""
