"""The timing core: the agent sends its timing to its CPUs and keeps the rest of itself off
them, the protocol runs without the garbage collector, and what else ran on the timing CPU is
reported with the measurement. (That every runner times on the CPUs it is given is the runner
contract's: test_runner_contract.py.)"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from latlab.agent.config import AgentSettings
from latlab.agent.isolation import keep_off, split_cpus, timing_core
from latlab.agent.main import connect_agent
from latlab.agent.protocol import Phase, run_protocol
from latlab.client import Client
from latlab.runtimes import RuntimeConfig
from latlab.runtimes.onnxruntime import OnnxRuntimeConfig
from latlab.schemas import JobState
from latlab.server.embedded import EmbeddedServer
from tests.factories import API_KEY, cnn_bytes
from tests.fake_runner import FakeRunner
from tests.test_agent_loop import settings_for

linux_only = pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or not Path("/proc/stat").exists(),
    reason="CPU affinity and /proc/stat are Linux's",
)
pytestmark = linux_only

LAST_CPU = max(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0


@pytest.fixture(autouse=True)
def _affinity_restored() -> Iterator[None]:
    before = os.sched_getaffinity(0)
    yield
    os.sched_setaffinity(0, before)


def test_an_unpinned_run_says_so() -> None:
    with timing_core(None) as host:
        pass
    assert host.stop()["cpus"] is None and "other_busy_pct" not in host.stop()


def test_another_process_on_the_timing_cpu_shows_in_the_measurement() -> None:
    """A busy process pinned to the timing CPU takes about half of it while the timing thread
    spins: the watch reports that share as the CPU's time spent outside the agent."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        os.sched_setaffinity(spinner.pid, [LAST_CPU])
        time.sleep(0.3)  # started and spinning
        with timing_core([LAST_CPU]) as host:
            cpu0 = time.process_time()
            while time.process_time() - cpu0 < 0.5:
                pass
            report = host.stop()
    finally:
        spinner.kill()
        spinner.wait()
    assert report["other_busy_pct"] >= 20


def test_the_protocol_runs_without_the_garbage_collector_and_restores_it() -> None:
    states: list[bool] = []
    run_protocol(lambda: states.append(gc.isenabled()), Phase(2, 0), Phase(3, 0))
    assert states == [False] * 5 and gc.isenabled()
    gc.disable()
    try:
        run_protocol(lambda: None, Phase(1, 0), Phase(1, 0))
        assert not gc.isenabled()  # left as the caller had it
    finally:
        gc.enable()


def test_timing_cpus_are_read_from_a_flag_an_env_var_or_a_list() -> None:
    usable = sorted(os.sched_getaffinity(0))
    first, last = usable[0], usable[-1]
    both = sorted({first, last})
    for given, expected in [
        (str(last), [last]),
        (",".join(map(str, both)), both),
        (" , ".join(map(str, both)) + " ", both),
        (f"[{last}]", [last]),
        (first, [first]),
        (both, both),
    ]:
        assert AgentSettings(timing_cpus=given).timing_cpus == expected, given


@pytest.mark.parametrize("bad", ["x", "1;2", "4096", [4096]])
def test_timing_cpus_that_do_not_exist_here_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="timing CPUs"):
        AgentSettings(timing_cpus=bad)


def test_keep_off_pins_this_thread_to_the_other_cpus() -> None:
    others = keep_off([LAST_CPU])
    assert set(others) == set(range(os.cpu_count() or 1)) - {LAST_CPU}
    if others:
        assert os.sched_getaffinity(0) == set(others)
    split = split_cpus()
    assert split is None or (split[0] == [LAST_CPU] and LAST_CPU not in split[1])


class _ConfigRecordingRunner(FakeRunner):
    def __init__(self) -> None:
        super().__init__()
        self.configs: list[RuntimeConfig] = []

    def time(self, model_path: Path, config: RuntimeConfig, should_stop: Callable[[], bool]) -> Any:
        self.configs.append(config)
        return super().time(model_path, config, should_stop)


def test_the_agent_times_on_its_timing_cpus_unless_the_job_names_its_own(
    tmp_path: Path, live_server: EmbeddedServer
) -> None:
    runner = _ConfigRecordingRunner()
    stop = threading.Event()
    settings = settings_for(live_server.url, tmp_path, timing_cpus=[LAST_CPU])
    agent = connect_agent(settings, {"onnxruntime": runner}, stop)
    worker = threading.Thread(target=agent.run)
    worker.start()
    try:
        with Client(live_server.url, API_KEY) as client:
            model = client.upload_model("m.onnx", data=cnn_bytes())
            own = min(os.sched_getaffinity(0))
            ids = [
                client.create_job(model.id, selector={}, config=config).id
                for config in (OnnxRuntimeConfig(), OnnxRuntimeConfig(cpu_affinity=[own], seed=1))
            ]
            assert all(j.state == JobState.done for j in client.wait_jobs(ids, timeout_s=30))
    finally:
        stop.set()
        worker.join(timeout=30)
        agent.client.close()
    assert sorted(c.cpu_affinity or [] for c in runner.configs) == sorted([[LAST_CPU], [own]])
