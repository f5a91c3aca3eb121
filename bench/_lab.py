"""A lab on this machine for the benchmarks: ``latlab.lab.local`` (an embedded server and one
``latlab agent`` process, the timing on a CPU of its own) with its data kept in a directory."""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from latlab.client import Client
from latlab.lab.local import local_lab
from latlab.progress import follow_dataset
from latlab.runtimes import RuntimeConfig
from latlab.schemas import DatasetCreate, DatasetOut, DeviceOut
from latlab.server.config import Settings
from latlab.server.embedded import free_port
from latlab.spaces import GraphForm

LATLAB = str(Path(sys.executable).with_name("latlab"))


@contextlib.contextmanager
def bench_lab(
    root: Path,
    api_key: str,
    enroll_key: str,
    database_url: str | None = None,
    **settings_overrides: Any,
) -> Iterator[tuple[Client, DeviceOut, Settings]]:
    """``latlab.lab.local`` in ``root`` (the timing on the last CPU, the server and this
    process on the others): the client, the agent's device and the server's settings
    (``settings_overrides``: any other ``Settings`` field)."""
    settings = Settings(
        data_dir=root,
        database_url=database_url,
        api_keys=[SecretStr(api_key)],
        enroll_key=SecretStr(enroll_key),
        **settings_overrides,
    )
    # the same port for the same data dir: the agent keeps its registration (and its device
    # its measurements) only while the server's URL stays the same
    port_file = root / "bench-port"
    if not port_file.exists():
        port_file.write_text(str(free_port()))
    with local_lab(settings, agent_name="bench-cpu", port=int(port_file.read_text())) as lab:
        yield lab.client, lab.device, settings


def credentials(root: Path) -> tuple[str, str]:
    """The lab's API key and enrollment key, made once per data dir and kept there."""
    path = root / "bench-credentials.json"
    if not path.exists():
        path.write_text(json.dumps([secrets.token_urlsafe(16), secrets.token_urlsafe(16)]))
    api_key, enroll_key = json.loads(path.read_text())
    return api_key, enroll_key


def start_server(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """``latlab server`` in a process of its own (as deployed: an embedded server would share
    the benchmark's interpreter, garbage collector and GIL), on a free port, once its /healthz
    answers; (the process, its URL)."""
    port = free_port()
    command = [LATLAB, "server", "--port", str(port), "--log-level", "warning"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit("the server did not start")
        time.sleep(0.2)


@contextlib.contextmanager
def measured_sample(
    root: Path,
    name: str,
    n: int,
    seed: int,
    config: RuntimeConfig,
    timeout_s: float,
    forms: Sequence[GraphForm] = (GraphForm.pruned,),
    space: str = "nb201",
) -> Iterator[tuple[Client, DeviceOut, dict[GraphForm, DatasetOut]]]:
    """A local lab in ``root`` (kept: a rerun reuses its measurements) that has measured ``n``
    archs of ``space`` sampled with ``seed`` in each graph form of ``forms``, as the campaign
    ``name`` (the pruned form) and ``name-eager``: the client, the agent's device and the
    finished dataset of each form (the agent measures the campaigns one after the other)."""
    root.mkdir(parents=True, exist_ok=True)
    api_key, enroll_key = credentials(root)
    with bench_lab(root, api_key, enroll_key) as (client, device, _):
        bodies = {
            form: DatasetCreate(
                name=name if form is GraphForm.pruned else f"{name}-{form}",
                space=space,
                n=n,
                seed=seed,
                device_ids=[device.id],
                config=config,
                form=form,
            )
            for form in forms
        }
        found = {d.name: d for d in client.datasets()}
        started = {
            form: found[body.name] if body.name in found else client.create_dataset(body)
            for form, body in bodies.items()
        }
        yield (
            client,
            device,
            {
                form: follow_dataset(client, dataset.id, timeout_s=timeout_s)
                for form, dataset in started.items()
            },
        )
