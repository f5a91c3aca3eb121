"""The runner process: a runner timing in a child the agent can kill. Kept from one job to the
next; killed at once when a job must stop, even inside onnxruntime's C code; a child that dies,
runs out of its memory or hits a runner's bug fails that job only, and the next job gets a new
child; the child ends with the agent's process. (The agent's use of it: test_deadlines.py;
every host runner times in it as it does in the agent's process: test_runner_contract.py.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from latlab.agent.errors import Interrupted, RunnerError, RunnerUnavailable
from latlab.agent.main import in_processes
from latlab.agent.runners.ort import OrtRunner
from latlab.agent.worker import RunnerProcess
from latlab.runtimes.onnxruntime import OnnxRuntimeConfig
from tests.endless_models import memory_hog_onnx, never_ending_onnx
from tests.factories import cnn_bytes, wait_for
from tests.fake_runner import CrashingRunner, FakeRunner

FAST = OnnxRuntimeConfig(
    protocol="fixed",
    warmup_runs=2,
    warmup_s=0,
    timed_runs=5,
    timed_s=0,
    profile_ops=False,
    deadline_s=60,
)


def _never() -> bool:
    return False


def alive(pid: int) -> bool:
    """Whether the process runs (a zombie, ended and not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:  # gone meanwhile, or no /proc on this host
        return not Path("/proc/self").exists()
    return state != "Z"


@pytest.fixture
def models(tmp_path: Path) -> dict[str, Path]:
    paths = {
        "cnn": cnn_bytes(),
        "endless": never_ending_onnx(),
        "hog": memory_hog_onnx(),
    }
    for name, data in paths.items():
        (tmp_path / f"{name}.onnx").write_bytes(data)
    return {name: tmp_path / f"{name}.onnx" for name in paths}


@pytest.fixture
def ort_process() -> Iterator[RunnerProcess]:
    runner = RunnerProcess(OrtRunner(), memory_bytes=2**30)
    yield runner
    runner.close()


def stop_after(seconds: float) -> Callable[[], bool]:
    at = time.monotonic() + seconds
    return lambda: time.monotonic() >= at


def test_one_process_times_job_after_job(
    ort_process: RunnerProcess, models: dict[str, Path]
) -> None:
    first = ort_process.time(models["cnn"], FAST, _never)
    pid = ort_process.pid
    second = ort_process.time(models["cnn"], FAST.model_copy(update={"seed": 1}), _never)
    assert len(first.samples_ms) == len(second.samples_ms) == 5
    assert first.runtime == "onnxruntime" and first.provider == "CPUExecutionProvider"
    assert ort_process.starts == 1 and ort_process.pid == pid and pid != os.getpid()
    assert ort_process.info() == OrtRunner().info()


def test_a_job_told_to_stop_kills_its_process_inside_the_runtime(
    ort_process: RunnerProcess, models: dict[str, Path]
) -> None:
    ort_process.time(models["cnn"], FAST, _never)
    stuck = ort_process.pid
    assert stuck is not None
    with pytest.raises(Interrupted, match="killed"):
        ort_process.time(models["endless"], FAST, stop_after(0.5))
    assert not alive(stuck) and ort_process.pid is None
    timing = ort_process.time(models["cnn"], FAST, _never)
    assert len(timing.samples_ms) == 5 and ort_process.starts == 2


def test_a_process_that_dies_mid_job_fails_that_job_and_the_next_gets_a_new_one(
    ort_process: RunnerProcess, models: dict[str, Path]
) -> None:
    """What the kernel's OOM killer does to a runner process, done by hand."""
    ort_process.time(models["cnn"], FAST, _never)

    def kill_it() -> bool:
        if ort_process.pid is not None:
            os.kill(ort_process.pid, signal.SIGKILL)
        return False

    with pytest.raises(RunnerError, match=r"died mid-job: killed .*\(SIGKILL\)"):
        ort_process.time(models["endless"], FAST, kill_it)
    assert len(ort_process.time(models["cnn"], FAST, _never).samples_ms) == 5
    assert ort_process.starts == 2


def test_a_model_over_the_memory_cap_fails_and_the_process_times_the_next_job(
    ort_process: RunnerProcess, models: dict[str, Path]
) -> None:
    with pytest.raises(RunnerError, match="alloc"):
        ort_process.time(models["hog"], FAST, _never)
    assert len(ort_process.time(models["cnn"], FAST, _never).samples_ms) == 5
    assert ort_process.starts == 1  # onnxruntime gave its memory back


def test_a_runner_s_bug_fails_its_job_and_the_next_job_gets_a_new_process(
    models: dict[str, Path],
) -> None:
    crashing = RunnerProcess(CrashingRunner())
    try:
        with pytest.raises(RunnerError, match="agent error: ValueError: a bug in the runner"):
            crashing.time(models["cnn"], FAST, _never)
        assert crashing.pid is None
        with pytest.raises(RunnerError, match="a bug in the runner"):
            crashing.time(models["cnn"], FAST, _never)
        assert crashing.starts == 2
    finally:
        crashing.close()


def test_close_ends_the_process_and_a_later_job_starts_another(
    ort_process: RunnerProcess, models: dict[str, Path]
) -> None:
    ort_process.time(models["cnn"], FAST, _never)
    pid = ort_process.pid
    assert pid is not None
    ort_process.close()
    assert not alive(pid) and ort_process.pid is None
    ort_process.time(models["cnn"], FAST, _never)
    assert ort_process.starts == 2


AGENT = """
import sys, time
from pathlib import Path
from latlab.agent.runners.ort import OrtRunner
from latlab.agent.worker import RunnerProcess
from latlab.runtimes.onnxruntime import OnnxRuntimeConfig

runner = RunnerProcess(OrtRunner())

def announce():
    print(runner.pid, flush=True)
    return False

runner.time(Path(sys.argv[1]), OnnxRuntimeConfig(), announce)
"""


def test_the_process_ends_with_the_agent_s_process_however_that_ends(
    models: dict[str, Path],
) -> None:
    """kill -9 of the agent leaves no one to kill the runner process: it goes by itself."""
    with subprocess.Popen(
        [sys.executable, "-c", AGENT, str(models["endless"])], stdout=subprocess.PIPE, text=True
    ) as agent:
        try:
            assert agent.stdout is not None
            pid = int(agent.stdout.readline())
            assert alive(pid)
            agent.kill()
            agent.wait(timeout=30)
            wait_for(lambda: not alive(pid))
        finally:
            agent.kill()


def test_a_runner_that_cannot_go_to_a_process_stays_in_the_agent_s() -> None:
    class Local(FakeRunner):  # a class pickle cannot find by name
        pass

    local = Local()
    with pytest.raises(RunnerUnavailable, match="cannot be sent to a runner process"):
        RunnerProcess(local)
    wrapped = in_processes({"onnxruntime": local, "fake": FakeRunner()}, memory_bytes=0)
    assert wrapped["onnxruntime"] is local and isinstance(wrapped["fake"], RunnerProcess)
