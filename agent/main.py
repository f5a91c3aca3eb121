"""Start an agent: load runners, probe the device, register once, then work."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import socket
import sys
import threading
from collections.abc import Iterator, Sequence

from latlab.agent.adb import Adb
from latlab.agent.cache import ModelCache
from latlab.agent.config import AgentSettings
from latlab.agent.errors import RegistrationError, RunnerUnavailable
from latlab.agent.isolation import keep_off
from latlab.agent.loop import Agent, AgentStats
from latlab.agent.probe import probe_descriptor, probe_phone_descriptor
from latlab.agent.runners import available_runners, phone_runners
from latlab.agent.runners.base import Runner
from latlab.agent.state import AgentState, load_state, save_state
from latlab.agent.thermal import ThermalGate, host_temperature_c
from latlab.agent.worker import RunnerProcess
from latlab.client import AgentClient
from latlab.errors import ApiError
from latlab.schemas import RuntimeInfo

__all__ = ["background_agent", "connect_agent", "in_processes", "run_agent"]

log = logging.getLogger(__name__)


def connect_agent(
    settings: AgentSettings,
    runners: dict[str, Runner] | None = None,
    stop: threading.Event | None = None,
) -> Agent:
    """Register (or reuse the saved registration), report the descriptor, build the Agent.

    With ``adb_serial`` the agent is that phone's: its one runner is benchmark_model on the
    phone and its descriptor is the phone's, not this host's. ``runners`` are used as given;
    without them the agent loads this host's (or phone's), each in a ``RunnerProcess`` unless
    ``settings.runner_process`` is off."""
    return _connect(settings, runners, stop)[0]


def _connect(
    settings: AgentSettings, runners: dict[str, Runner] | None, stop: threading.Event | None
) -> tuple[Agent, AgentState, list[RuntimeInfo]]:
    """``connect_agent``, with the registration (its name always set) and the runtimes."""
    adb = Adb(settings.adb_serial, settings.adb_path) if settings.adb_serial else None
    if runners is None:
        runners = available_runners() if adb is None else phone_runners(settings, adb)
        if settings.runner_process:
            runners = in_processes(runners, settings.runner_memory_bytes)
    if not runners:
        raise RegistrationError("no runtime is installed: pip install 'latlab[agent]'")
    infos = [r.info() for r in runners.values()]
    if adb is None:
        descriptor = probe_descriptor(infos, settings.labels)
        default_name = socket.gethostname()
    else:
        descriptor = probe_phone_descriptor(adb, infos, settings.labels)
        default_name = f"{descriptor.device_model or 'phone'} {adb.serial}"
    server_url = settings.server_url.rstrip("/")
    state = load_state(settings.state_file)
    client = AgentClient(
        server_url, state.token if state and state.server_url == server_url else None
    )
    try:
        if state is None or state.server_url != server_url:
            key = settings.enroll_key.get_secret_value()
            if not key:
                raise RegistrationError(
                    "this agent is not registered yet: give the enrollment key "
                    "(--enroll-key or LATLAB_AGENT_ENROLL_KEY)"
                )
            name = settings.name or default_name
            registered = client.register(key, name, descriptor)
            state = AgentState(server_url, registered.device_id, registered.token, name)
            save_state(settings.state_file, state)
            log.info("device registered", extra={"device_id": state.device_id})
        else:
            client.heartbeat(descriptor=descriptor)
            log.info("device registration reused", extra={"device_id": state.device_id})
            if state.name is None:  # a file from before names were kept: the name it would take
                state = dataclasses.replace(state, name=settings.name or default_name)
    except ApiError as exc:
        client.close()
        if exc.status == 401:
            raise RegistrationError(
                f"the server refused this agent's credentials ({exc.message}); check the "
                f"enrollment key, or delete {settings.state_file} to register again"
            ) from exc
        raise
    agent = Agent(
        client, runners, ModelCache(settings.cache_dir), settings, stop, thermal_gate(settings, adb)
    )
    return agent, state, infos


def _start_line(
    state: AgentState, runtimes: Sequence[RuntimeInfo], timing_cpus: Sequence[int] | None
) -> str:
    """What ``latlab agent`` prints once it is registered: who it is, where, with what."""
    offered = ", ".join(f"{r.name} {r.version}" for r in runtimes)
    timing = f"; timing on CPUs {','.join(map(str, timing_cpus))}" if timing_cpus else ""
    return (
        f'agent started: device "{state.name}" ({state.device_id}) on {state.server_url}; '
        f"runtimes {offered}{timing}; waiting for jobs "
        "(Ctrl-C stops it and gives a leased job back)"
    )


def in_processes(runners: dict[str, Runner], memory_bytes: int) -> dict[str, Runner]:
    """Each runner in a ``RunnerProcess``; one that cannot be sent to a process (it does not
    pickle) stays in this one, with a warning: a deadline stops it only between two runs."""
    wrapped: dict[str, Runner] = {}
    for name, runner in runners.items():
        try:
            wrapped[name] = RunnerProcess(runner, memory_bytes=memory_bytes)
        except RunnerUnavailable as exc:
            log.warning("%s; it times in the agent's process", exc)
            wrapped[name] = runner
    return wrapped


def thermal_gate(settings: AgentSettings, adb: Adb | None) -> ThermalGate | None:
    """The gate the settings ask for: a phone's thermal status, or this host's temperature."""
    poll_s = settings.thermal_poll_s
    if adb is not None and settings.max_thermal_status is not None:
        status = adb.thermal_status
        return ThermalGate(
            lambda: None if (s := status()) is None else float(s),
            settings.max_thermal_status,
            "thermal status",
            poll_s,
        )
    if adb is None and settings.max_temperature_c is not None:
        return ThermalGate(host_temperature_c, settings.max_temperature_c, "°C", poll_s)
    return None


def run_agent(settings: AgentSettings, stop: threading.Event) -> AgentStats:
    """The agent as a process of its own (``latlab agent``): with timing CPUs, the process
    (and every thread it starts: heartbeats, HTTP) keeps off them; only the timing goes there."""
    if settings.timing_cpus:
        others = keep_off(settings.timing_cpus)
        log.info("timing on CPUs %s, the rest of the agent on %s", settings.timing_cpus, others)
    agent, state, runtimes = _connect(settings, None, stop)
    print(_start_line(state, runtimes, settings.timing_cpus), file=sys.stderr, flush=True)
    try:
        return agent.run()
    finally:
        agent.close()


@contextlib.contextmanager
def background_agent(
    settings: AgentSettings, runners: dict[str, Runner] | None = None
) -> Iterator[Agent]:
    """An agent working in a thread of this process (the quickstart, examples, benches,
    tests); on exit it is asked to stop, joined, and its client closed."""
    stop = threading.Event()
    agent = connect_agent(settings, runners, stop)
    worker = threading.Thread(target=agent.run, name="latlab-agent", daemon=True)
    worker.start()
    try:
        yield agent
    finally:
        stop.set()
        worker.join(timeout=60)
        agent.close()
