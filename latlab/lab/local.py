"""A lab on this machine: an embedded server and one ``latlab agent`` process, laid out so the
timing has a CPU to itself (the quickstart and the benches).

The agent runs as a process of its own, as deployed: in the server's interpreter it would
share the garbage collector and the GIL with the campaign's preparation and the requests.
On a host with two or more CPUs the last one is the timing CPU: the agent pins its timing
thread there (``LATLAB_AGENT_TIMING_CPUS``) and everything else (the server, the caller, the
agent's heartbeats and uploads) is pinned to the others for the lab's lifetime.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from latlab.agent.isolation import pin_process, split_cpus
from latlab.agent.state import load_state
from latlab.client import Client
from latlab.errors import LatlabError
from latlab.schemas import DeviceOut
from latlab.server.config import Settings
from latlab.server.embedded import EmbeddedServer, free_port

__all__ = ["Lab", "LabError", "local_lab"]

REGISTER_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Lab:
    url: str
    client: Client
    #: The agent's device.
    device: DeviceOut
    #: Where the agent times (None: not pinned, a single CPU).
    timing_cpus: list[int] | None


class LabError(LatlabError):
    """The local lab could not start (the agent did not register)."""


@contextlib.contextmanager
def local_lab(
    settings: Settings,
    *,
    agent_name: str = "local-cpu",
    port: int | None = None,
    agent_env: dict[str, str] | None = None,
) -> Iterator[Lab]:
    """The lab whose data lives in ``settings.data_dir``; the agent is stopped (its job
    released) and this thread's CPUs given back on exit."""
    root = settings.data_dir
    api_key = settings.api_keys[0].get_secret_value()
    split = split_cpus()
    before = os.sched_getaffinity(0) if split is not None else None
    timing_cpus = split[0] if split is not None else None
    if split is not None:
        pin_process(split[1])  # the server's threads and the agent process inherit it
    state_file = root / "agent.json"
    env = {
        **os.environ,
        "LATLAB_AGENT_ENROLL_KEY": settings.enroll_key.get_secret_value(),
        "LATLAB_AGENT_NAME": agent_name,
        "LATLAB_AGENT_STATE_FILE": str(state_file),
        "LATLAB_AGENT_CACHE_DIR": str(root / "agent-cache"),
        "LATLAB_AGENT_TIMING_CPUS": ",".join(map(str, timing_cpus or [])),
        **(agent_env or {}),
    }
    if not timing_cpus:
        env.pop("LATLAB_AGENT_TIMING_CPUS")
    try:
        with (
            EmbeddedServer(settings, port=port or free_port()) as server,
            Client(server.url, api_key) as client,
        ):
            env["LATLAB_AGENT_SERVER_URL"] = server.url
            log_file = (root / "agent.log").open("ab")
            agent = subprocess.Popen(
                [sys.executable, "-m", "latlab", "agent"],
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
            try:
                device_id = _registered(agent, state_file, server.url, root)
                yield Lab(server.url, client, client.device(device_id), timing_cpus)
            finally:
                agent.terminate()
                try:
                    agent.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    agent.kill()
                    agent.wait()
                log_file.close()
    finally:
        if before is not None:
            pin_process(sorted(before))


def _registered(agent: subprocess.Popen[bytes], state_file: Path, url: str, root: Path) -> str:
    """The agent's device id once it has registered with the server at ``url``."""
    deadline = time.monotonic() + REGISTER_TIMEOUT_S
    while (state := load_state(state_file)) is None or state.server_url != url:
        if agent.poll() is not None or time.monotonic() > deadline:
            raise LabError(f"the local agent did not register; its log: {root / 'agent.log'}")
        time.sleep(0.2)
    return state.device_id
