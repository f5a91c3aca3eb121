"""Do the medians themselves move? The ground truth of every accuracy figure, re-measured.

K NAS-Bench-201 archs (exported as the campaigns export them) are timed through the agent's
own onnxruntime runner (the default protocol, 1 thread, no profiled pass), R rounds each, every
round in a new shuffled order and in a fresh session, under each condition:

- ``idle``: nothing else of latlab runs;
- ``neighbour``: a second process does what the server does during a campaign (exports
  NB201 archs to ONNX and hashes them, back to back) the whole time;
- with ``--pin``: each condition again with the timing pinned to the last CPU
  (``RuntimeConfig.cpu_affinity``) and the neighbour to the others.

Printed per condition: how far each round's median lies from the median of that arch's rounds
(median |dev|, share within 1/3/5/10 %), the worst arch's max/min ratio, and the samples'
spikes (share of samples above 1.5x their run's median). A ground truth that moves by more
than a LUT's error budget caps every LUT's "within ±10 %" figure, whatever the table holds.

    python bench/timing_noise.py [--archs 20] [--rounds 3] [--seed 0] [--pin]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from latlab.agent.runners.ort import OrtRunner
from latlab.export.files import model_file
from latlab.runtimes import ModelFormat, RuntimeConfig
from latlab.runtimes.onnxruntime import OnnxRuntimeConfig
from latlab.spaces import get_space

CONFIG = OnnxRuntimeConfig(profile_ops=False)
LAST_CPU = (os.cpu_count() or 1) - 1
NEIGHBOUR = """
import hashlib, itertools, sys
from latlab.export.files import model_file
from latlab.spaces import get_space
space = get_space("nb201")
for arch in itertools.cycle(space.sample(200, 1)):
    hashlib.sha256(model_file(space.graph(arch), ModelFormat.onnx)).hexdigest()
"""


@contextlib.contextmanager
def neighbour(cpus: list[int] | None) -> Iterator[None]:
    """The server's campaign preparation, as a busy process of its own."""
    process = subprocess.Popen([sys.executable, "-c", NEIGHBOUR])
    if cpus is not None:
        os.sched_setaffinity(process.pid, cpus)
    try:
        time.sleep(2.0)  # imports done, exporting
        yield
    finally:
        process.kill()
        process.wait()


def measure(
    paths: dict[str, Path], rounds: int, config: RuntimeConfig, seed: int
) -> tuple[dict[str, list[float]], float]:
    """Each arch's median per round, and the share of samples above 1.5x their run's median."""
    runner = OrtRunner()
    medians: dict[str, list[float]] = {arch: [] for arch in paths}
    spikes = total = 0
    order = list(paths)
    rng = random.Random(seed)
    for _ in range(rounds):
        rng.shuffle(order)
        for arch in order:
            timing = runner.time(paths[arch], config, lambda: False)
            median = statistics.median(timing.samples_ms)
            medians[arch].append(median)
            spikes += sum(1 for s in timing.samples_ms if s > 1.5 * median)
            total += len(timing.samples_ms)
    return medians, spikes / total


def report(name: str, medians: dict[str, list[float]], spikes: float, wall_s: float) -> None:
    devs = [
        abs(m / statistics.median(ms) - 1) for ms in medians.values() for m in ms if len(ms) > 1
    ]
    worst = max(max(ms) / min(ms) for ms in medians.values())
    within = "  ".join(f"{100 * sum(d <= t for d in devs) / len(devs):5.1f}%" for t in THRESHOLDS)
    print(
        f"{name:<28}{100 * statistics.median(devs):>7.2f}%  {within}{worst:>9.3f}"
        f"{100 * spikes:>8.2f}%{wall_s:>8.0f}"
    )


THRESHOLDS = (0.01, 0.03, 0.05, 0.10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pin", action="store_true", help="also pinned (timing on the last CPU)")
    parser.add_argument(
        "--conditions", default="idle,neighbour", help="comma-separated: idle, neighbour"
    )
    args = parser.parse_args()
    space = get_space("nb201")
    root = Path(tempfile.mkdtemp(prefix="latlab-noise-"))
    paths: dict[str, Path] = {}
    for arch in space.sample(args.archs, args.seed):
        path = root / f"nb201-{arch.index}.onnx"
        path.write_bytes(model_file(space.graph(arch), ModelFormat.onnx))
        paths[space.encode(arch)] = path

    others = [c for c in range(LAST_CPU)] or None
    pinned = CONFIG.model_copy(update={"cpu_affinity": [LAST_CPU]})
    plans = []
    for condition in args.conditions.split(","):
        plans.append((f"{condition}, unpinned", condition, CONFIG, None))
        if args.pin and LAST_CPU > 0:
            plans.append((f"{condition}, pinned cpu{LAST_CPU}", condition, pinned, others))
    print(
        f"{args.archs} NB201 archs x {args.rounds} rounds, onnxruntime 1 thread, "
        f"warm-up {CONFIG.warmup_s} s, timed {CONFIG.timed_s} s; {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.2f}"
    )
    header = "".join(f"{'<=' + str(int(100 * t)) + '%':>8}" for t in THRESHOLDS)
    print(f"{'condition':<28}{'|dev|':>8}{header}{'max/min':>9}{'spikes':>9}{'wall s':>8}")
    for i, (name, condition, config, neighbour_cpus) in enumerate(plans):
        started = time.monotonic()
        with neighbour(neighbour_cpus) if condition == "neighbour" else contextlib.nullcontext():
            medians, spikes = measure(paths, args.rounds, config, args.seed + i)
        report(name, medians, spikes, time.monotonic() - started)


if __name__ == "__main__":
    main()
