"""The runner contract: what the agent loop relies on from every runner of the agent's host,
run against each of them the same way: onnxruntime, LiteRT, the fake the queue tests use, and
the plug-in of DESIGN.md's worked example (tests/plugins/ort_basic.py). A new runtime's runner
joins ``CASES`` and must pass all of it, in the agent's process and in a runner process (the
agent's default, ``latlab.agent.worker``).

(benchmark_model times on a phone, not through the protocol: test_benchmark_model_runner.py.)"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from latlab.agent.errors import Interrupted, RunnerError
from latlab.agent.runners import available_runners, load_runner
from latlab.agent.runners.base import LoadedModel, ProtocolRunner
from latlab.agent.worker import RunnerProcess
from latlab.export.files import model_file
from latlab.runtimes import ModelFormat, ProtocolConfig, runtime_spec, runtimes
from latlab.runtimes.litert import LiteRtConfig
from latlab.runtimes.onnxruntime import OnnxRuntimeConfig
from latlab.spaces.nb201 import Nb201
from tests.factories import NB201_CONV_CELL
from tests.fake_runner import FakeRunner
from tests.plugins.ort_basic import SPEC as ORT_BASIC
from tests.plugins.ort_basic import OrtBasicConfig, OrtBasicRunner

PROTOCOL = {"warmup_runs": 2, "warmup_s": 0, "timed_runs": 5, "timed_s": 0, "profile_runs": 2}
CAN_PIN = hasattr(os, "sched_setaffinity") and Path("/proc/stat").exists()


@dataclass(frozen=True)
class Case:
    make: Callable[[], ProtocolRunner]  # type: ignore[type-arg]
    config: ProtocolConfig
    model_format: ModelFormat
    #: Whether the runtime has a profiler (per-op rows when profile_ops is on).
    profiles: bool


def _litert() -> ProtocolRunner:  # type: ignore[type-arg]
    pytest.importorskip(
        "ai_edge_litert", reason="LiteRT is not installed: pip install -e '.[tflite]'"
    )
    from latlab.agent.runners.litert import LiteRtRunner

    return LiteRtRunner()


def _ort() -> ProtocolRunner:  # type: ignore[type-arg]
    from latlab.agent.runners.ort import OrtRunner

    return OrtRunner()


CASES = {
    "onnxruntime": Case(_ort, OnnxRuntimeConfig(**PROTOCOL), ModelFormat.onnx, profiles=True),
    "litert": Case(_litert, LiteRtConfig(**PROTOCOL), ModelFormat.tflite, profiles=False),
    "fake": Case(FakeRunner, OnnxRuntimeConfig(**PROTOCOL), ModelFormat.onnx, profiles=False),
    "onnxruntime-basic": Case(
        OrtBasicRunner, OrtBasicConfig(**PROTOCOL), ModelFormat.onnx, profiles=True
    ),
}


@pytest.fixture(params=list(CASES))
def case(request: pytest.FixtureRequest) -> Case:
    return CASES[request.param]


@pytest.fixture
def runner(case: Case) -> ProtocolRunner:  # type: ignore[type-arg]
    return case.make()


@pytest.fixture
def model_path(case: Case, tmp_path: Path) -> Path:
    space = Nb201()
    graph = space.graph(space.parse(NB201_CONV_CELL))
    path = tmp_path / f"{'ab' * 32}.{case.model_format.value}"
    path.write_bytes(model_file(graph, case.model_format))
    return path


@pytest.fixture(autouse=True)
def _affinity_restored() -> Iterator[None]:
    before = os.sched_getaffinity(0) if CAN_PIN else None
    yield
    if before is not None:
        os.sched_setaffinity(0, before)


def _never() -> bool:
    return False


def test_info_names_the_runtime_its_version_and_providers(runner: ProtocolRunner) -> None:  # type: ignore[type-arg]
    info = runner.info()
    assert info.name == runner.name
    assert info.version and info.version == runner.version()
    assert info.providers


def test_a_timing_follows_the_protocol_and_says_what_ran_it(
    runner: ProtocolRunner,  # type: ignore[type-arg]
    case: Case,
    model_path: Path,
) -> None:
    config = case.config.model_copy(update={"threads": 1, "profile_ops": False})
    timing = runner.time(model_path, config, _never)

    assert timing.runtime == runner.name == config.runtime
    assert timing.runtime_version == runner.version()
    assert timing.provider == config.provider
    assert timing.threads == 1
    assert timing.warmup.n >= config.warmup_runs
    assert len(timing.samples_ms) >= config.timed_runs
    assert all(s > 0 for s in timing.samples_ms)
    assert timing.reported is None  # a host runner keeps every sample
    assert timing.input_shapes and all(timing.input_shapes.values())
    assert timing.timing_wall_s > 0
    assert timing.ops == [] and timing.op_profile is None  # profile_ops off
    assert timing.provenance is not None and "host" in timing.provenance


def test_per_op_rows_come_from_a_profiled_pass_where_the_runtime_has_a_profiler(
    runner: ProtocolRunner,  # type: ignore[type-arg]
    case: Case,
    model_path: Path,
) -> None:
    timing = runner.time(model_path, case.config.model_copy(update={"profile_ops": True}), _never)
    if case.profiles:
        assert timing.ops and all(op.dur_us >= 0 for op in timing.ops)
        assert timing.op_profile is not None and timing.op_profile["runs"] == 2
    else:
        assert timing.ops == [] and timing.op_profile is None


@pytest.mark.skipif(not CAN_PIN, reason="CPU affinity and /proc/stat are Linux's")
def test_every_run_is_timed_on_the_cpus_it_is_given_and_they_are_given_back(
    runner: ProtocolRunner,  # type: ignore[type-arg]
    case: Case,
    model_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cpu = max(os.sched_getaffinity(0))
    seen: set[frozenset[int]] = set()
    load = runner.load

    def recording_load(path: Path, config: ProtocolConfig) -> LoadedModel:
        loaded = load(path, config)
        run_once = loaded.run_once

        def recording_run() -> object:
            seen.add(frozenset(os.sched_getaffinity(0)))
            return run_once()

        loaded.run_once = recording_run
        return loaded

    monkeypatch.setattr(runner, "load", recording_load)
    before = os.sched_getaffinity(0)
    config = case.config.model_copy(update={"cpu_affinity": [cpu], "profile_ops": False})
    timing = runner.time(model_path, config, _never)

    assert seen == {frozenset({cpu})}  # every warm-up and timed run, pinned
    assert os.sched_getaffinity(0) == before
    assert timing.provenance is not None
    host = timing.provenance["host"]
    assert host["cpus"] == [cpu]
    # the shares are read from /proc/stat's 10 ms ticks: a timing shorter than one has none
    shares = {k: v for k, v in host.items() if k in ("other_busy_pct", "steal_pct")}
    assert all(0 <= v <= 100 for v in shares.values()) and len(shares) in (0, 2)


def test_a_stop_between_two_runs_interrupts_the_timing(
    runner: ProtocolRunner,  # type: ignore[type-arg]
    case: Case,
    model_path: Path,
) -> None:
    with pytest.raises(Interrupted):
        runner.time(model_path, case.config, lambda: True)


def test_a_file_the_runtime_cannot_load_is_a_runner_error(
    runner: ProtocolRunner,  # type: ignore[type-arg]
    case: Case,
    tmp_path: Path,
) -> None:
    if isinstance(runner, FakeRunner):
        path = tmp_path / "missing.onnx"  # the fake reads no bytes: a missing file is its refusal
    else:
        path = tmp_path / f"garbage.{case.model_format.value}"
        path.write_bytes(b"\x08\x01 not a model")
    with pytest.raises(RunnerError):
        runner.time(path, case.config, _never)


def test_a_config_of_another_runtime_is_refused(
    runner: ProtocolRunner,  # type: ignore[type-arg]
    case: Case,
    model_path: Path,
) -> None:
    other = next(c.config for c in CASES.values() if c.config.runtime != case.config.runtime)
    if isinstance(other, runner.config_type):  # a subclass (the plug-in's config is onnxruntime's)
        other = LiteRtConfig(**PROTOCOL)
    with pytest.raises(RunnerError, match=f"the {runner.name} runner got a"):
        runner.time(model_path, other, _never)


def test_a_runner_times_in_a_runner_process_as_it_does_in_the_agent_s(
    runner: ProtocolRunner,  # type: ignore[type-arg]
    case: Case,
    model_path: Path,
    tmp_path: Path,
) -> None:
    """The agent's default (latlab.agent.worker): the runner sent to a child process keeps
    the protocol, the provider, the pinning, the profiled pass and its refusals."""
    cpus = [max(os.sched_getaffinity(0))] if CAN_PIN else None
    garbage = tmp_path / f"garbage.{case.model_format.value}"
    if not isinstance(runner, FakeRunner):  # the fake reads no bytes: a missing file it refuses
        garbage.write_bytes(b"\x08\x01 not a model")
    other = LiteRtConfig(**PROTOCOL) if case.config.runtime != "litert" else CASES["fake"].config
    process = RunnerProcess(runner)
    try:
        timing = process.time(
            model_path, case.config.model_copy(update={"cpu_affinity": cpus}), _never
        )
        with pytest.raises(RunnerError):
            process.time(garbage, case.config, _never)
        with pytest.raises(RunnerError, match=f"the {runner.name} runner got a"):
            process.time(model_path, other, _never)
    finally:
        process.close()
    assert timing.runtime == runner.name and timing.provider == case.config.provider
    assert timing.warmup.n >= case.config.warmup_runs
    assert len(timing.samples_ms) >= case.config.timed_runs
    assert timing.provenance is not None and timing.provenance["host"]["cpus"] == cpus
    assert bool(timing.ops) == case.profiles
    assert process.starts == 1  # refusals keep the process


def test_every_registered_host_runtime_loads_its_own_runner() -> None:
    loaded = available_runners()
    assert "onnxruntime" in loaded
    for name, spec in runtimes().items():
        if spec.target != "host" or name not in loaded:
            continue
        runner = load_runner(name)
        module, _, cls = spec.runner.partition(":")
        assert (type(runner).__module__, type(runner).__name__) == (module, cls)
        assert runner.name == name
        assert isinstance(runner, ProtocolRunner) and runner.config_type is spec.config
        assert spec.config.model_fields["runtime"].default == name


def test_the_plug_in_is_a_runtime_like_the_others() -> None:
    """Its spec is complete; its config is onnxruntime's with another default and name."""
    assert ORT_BASIC.config(**PROTOCOL).graph_optimization.value == "basic"
    assert ORT_BASIC.config(**PROTOCOL).provider == "CPUExecutionProvider"
    assert not ORT_BASIC.builds_luts  # no fusion rules given
    assert runtime_spec("onnxruntime").builds_luts and not runtime_spec("litert").builds_luts
