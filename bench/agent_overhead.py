"""How much does the agent add to what it measures?

1. Timing fidelity: the same ONNX models (each >= 1 ms) timed through the agent's runner and
   through a plain ``InferenceSession.run`` loop with the same threads and the same protocol
   (warm-up then timed runs), interleaved over several rounds in one process. Prints the
   ratio of medians per model. Goal: <= 1.02. The same for the LiteRT runner against a plain
   ``Interpreter.invoke()`` loop, on NAS-Bench-201 archs written as TFLite (XNNPACK on).
2. The runner process (``latlab.agent.worker``, the agent's default): the same models timed by
   the onnxruntime runner in this process and in a ``RunnerProcess``, interleaved; the ratio
   of medians (goal: <= 1.02, and about 1.00), what starting the process costs (once per
   agent, and after each job it had to kill) and what it adds to a job once started.
3. Job overhead: through the whole queue (embedded server on SQLite + an agent thread, real
   HTTP), time from job submission to the result stored, minus the time spent in the timed
   and warm-up runs themselves, with the runner process and without. Goal: <= 100 ms.

    python bench/agent_overhead.py [--rounds 5] [--jobs 5]
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from pydantic import SecretStr

from latlab.agent.config import AgentSettings
from latlab.agent.main import background_agent
from latlab.agent.runners.base import Runner
from latlab.agent.runners.litert import LiteRtRunner
from latlab.agent.runners.ort import OrtRunner
from latlab.agent.worker import RunnerProcess
from latlab.client import Client
from latlab.demo_models import DEMO_CNNS, make_cnn
from latlab.export.tflite import to_tflite
from latlab.runtimes import RuntimeConfig
from latlab.runtimes.litert import LiteRtConfig
from latlab.runtimes.onnxruntime import OnnxRuntimeConfig
from latlab.schemas import JobState
from latlab.server.config import Settings
from latlab.server.embedded import EmbeddedServer
from latlab.spaces.nb201 import Nb201

#: NAS-Bench-201 archs for the LiteRT comparison: about 1.9, 2.6 and 4.8 ms with XNNPACK here.
LITERT_ARCHS = (6722, 11791, 11718)
NB201 = Nb201()
CONFIG = OnnxRuntimeConfig(
    warmup_runs=10, warmup_s=0.5, timed_runs=100, timed_s=1.0, profile_ops=False
)


def plain_median_ms(path: Path, config: RuntimeConfig) -> float:
    """What a careful user would write by hand: one session, a warm-up, a timed loop."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = config.threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feeds = {
        i.name: np.random.default_rng(0)
        .standard_normal([d if isinstance(d, int) else 1 for d in i.shape])
        .astype(np.float32)
        for i in sess.get_inputs()
    }
    deadline = time.perf_counter() + config.warmup_s
    n = 0
    while n < config.warmup_runs or time.perf_counter() < deadline:
        sess.run(None, feeds)
        n += 1
    samples_ms = []
    deadline = time.perf_counter() + config.timed_s
    while len(samples_ms) < config.timed_runs or time.perf_counter() < deadline:
        t0 = time.perf_counter_ns()
        sess.run(None, feeds)
        samples_ms.append((time.perf_counter_ns() - t0) / 1e6)
    return statistics.median(samples_ms)


def plain_litert_median_ms(path: Path, config: RuntimeConfig) -> float:
    """The same by hand for LiteRT: one interpreter, a warm-up, a timed ``invoke()`` loop."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=config.threads)
    interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        value = np.random.default_rng(0).standard_normal(detail["shape"]).astype(np.float32)
        interpreter.set_tensor(detail["index"], value)
    deadline = time.perf_counter() + config.warmup_s
    n = 0
    while n < config.warmup_runs or time.perf_counter() < deadline:
        interpreter.invoke()
        n += 1
    samples_ms = []
    deadline = time.perf_counter() + config.timed_s
    while len(samples_ms) < config.timed_runs or time.perf_counter() < deadline:
        t0 = time.perf_counter_ns()
        interpreter.invoke()
        samples_ms.append((time.perf_counter_ns() - t0) / 1e6)
    return statistics.median(samples_ms)


def fidelity(
    paths: dict[str, Path],
    rounds: int,
    runner: Runner,
    plain: Callable[[Path, RuntimeConfig], float],
    config: RuntimeConfig,
    title: str = "1. timing fidelity",
    columns: tuple[str, str] = ("plain_ms", "agent_ms"),
) -> None:
    print(
        f"\n{title}, {runner.name} (threads=1, {rounds} interleaved rounds; the agent's "
        f"{config.protocol.value} protocol with floors warm-up {config.warmup_runs} runs/"
        f"{config.warmup_s} s, timed {config.timed_runs} runs/{config.timed_s} s; the plain "
        "loop: the floors)"
    )
    print(f"{'model':<10}{columns[0]:>10}{columns[1]:>12}{'ratio':>8}")
    ratios = []
    for name, path in paths.items():
        plain_ms: list[float] = []
        agent_ms: list[float] = []
        for r in range(rounds):
            order = ("plain", "agent") if r % 2 == 0 else ("agent", "plain")
            for which in order:
                if which == "plain":
                    plain_ms.append(plain(path, config))
                else:
                    timing = runner.time(path, config, lambda: False)
                    agent_ms.append(statistics.median(timing.samples_ms))
        p, a = statistics.median(plain_ms), statistics.median(agent_ms)
        ratios.append(a / p)
        print(f"{name:<10}{p:>10.3f}{a:>12.3f}{a / p:>8.3f}")
    geomean = math.exp(statistics.fmean(math.log(r) for r in ratios))
    print(f"geometric mean ratio {geomean:.3f}, worst {max(ratios):.3f} (goal: within 2 %)")


def in_process_median_ms(path: Path, config: RuntimeConfig) -> float:
    """The agent's runner in this process (what an agent with ``runner_process`` off does)."""
    return statistics.median(OrtRunner().time(path, config, lambda: False).samples_ms)


def runner_process(paths: dict[str, Path], rounds: int, n_jobs: int) -> None:
    process = RunnerProcess(OrtRunner())
    try:
        fidelity(
            paths,
            rounds,
            process,
            in_process_median_ms,
            CONFIG,
            "2. the runner process",
            ("in_proc_ms", "process_ms"),
        )
    finally:
        process.close()
    first = next(iter(paths.values()))
    starts, added = [], []
    for _ in range(rounds):
        process = RunnerProcess(OrtRunner())
        try:
            t0 = time.perf_counter()
            process.time(first, CONFIG, lambda: False)  # starts the process
            started = time.perf_counter() - t0
            for _ in range(n_jobs):
                t0 = time.perf_counter()
                timing = process.time(first, CONFIG, lambda: False)
                added.append(time.perf_counter() - t0 - timing.timing_wall_s)
            # the same job in this process, already imported: the first job's extra is the start
            in_process = OrtRunner().time(first, CONFIG, lambda: False)
            starts.append(started - in_process.timing_wall_s)
        finally:
            process.close()
    print(
        f"process start (a fresh interpreter, onnxruntime imported): median "
        f"{statistics.median(starts) * 1e3:.0f} ms over {rounds} starts; once started, a job "
        f"pays {statistics.median(added) * 1e3:.2f} ms more than its timing (median of "
        f"{len(added)} jobs of {first.stem})"
    )


def job_overhead(paths: dict[str, Path], n_jobs: int) -> None:
    for in_a_process in (True, False):
        _job_overhead(paths, n_jobs, in_a_process)


def _job_overhead(paths: dict[str, Path], n_jobs: int, in_a_process: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        settings = Settings(
            data_dir=root, api_keys=[SecretStr("bench")], enroll_key=SecretStr("enroll")
        )
        with (
            EmbeddedServer(settings) as server,
            Client(server.url, "bench") as client,
            background_agent(
                AgentSettings(
                    server_url=server.url,
                    enroll_key=SecretStr("enroll"),
                    name="bench",
                    state_file=root / "agent.json",
                    cache_dir=root / "cache",
                    claim_wait_s=5,
                    runner_process=in_a_process,
                )
            ),
        ):
            where = "in a runner process" if in_a_process else "in the agent's process"
            print(
                f"\n3. job overhead through the queue, timed {where} ({n_jobs} jobs per model, "
                "SQLite, loopback HTTP, model cached and process started by a first job)"
            )
            print(f"{'model':<10}{'e2e_ms':>9}{'runs_ms':>9}{'overhead_ms':>13}")
            worst = 0.0
            for name, path in paths.items():
                model = client.upload_model(path)
                overheads, e2es, runs = [], [], []
                for i in range(n_jobs + 1):  # the first one downloads the model: not counted
                    config = CONFIG.model_copy(update={"seed": i})
                    submitted = datetime.now(UTC)
                    job = client.create_job(model.id, selector={}, config=config)
                    [done] = client.wait_jobs([job.id], timeout_s=300, poll_s=0.05)
                    assert done.state == JobState.done, done.error
                    [m] = client.measurements(job_id=job.id, samples=True)
                    e2e_ms = (m.created_at - submitted).total_seconds() * 1e3
                    runs_ms = m.warmup.total_ms + sum(m.samples_ms or [])
                    if i:
                        e2es.append(e2e_ms)
                        runs.append(runs_ms)
                        overheads.append(e2e_ms - runs_ms)
                o = statistics.median(overheads)
                worst = max(worst, o)
                print(
                    f"{name:<10}{statistics.median(e2es):>9.1f}{statistics.median(runs):>9.1f}{o:>13.1f}"
                )
            print(f"worst median overhead {worst:.1f} ms (goal <= 100 ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for spec in DEMO_CNNS:
            path = Path(tmp) / f"{spec.name}.onnx"
            onnx.save(make_cnn(spec), str(path))
            paths[spec.name] = path
        print(f"onnxruntime {ort.__version__}; models: {', '.join(paths)}")
        started = time.monotonic()
        fidelity(paths, args.rounds, OrtRunner(), plain_median_ms, CONFIG)
        tflite = {}
        for index in LITERT_ARCHS:
            path = Path(tmp) / f"nb201-{index}.tflite"
            path.write_bytes(to_tflite(NB201.graph(NB201.from_index(index))))
            tflite[f"nb201-{index}"] = path
        litert = LiteRtConfig(**CONFIG.model_dump(exclude=set(CONFIG.settings()) | {"runtime"}))
        fidelity(tflite, args.rounds, LiteRtRunner(), plain_litert_median_ms, litert)
        runner_process(paths, args.rounds, args.jobs)
        job_overhead(paths, args.jobs)
        print(f"\n(total {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
