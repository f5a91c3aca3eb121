"""A latency-constrained architecture search over NAS-Bench-201, through the latlab SDK.

Regularised evolution (Real et al., 2019) that keeps only archs whose predicted latency on a
chosen device is under a limit. Latency comes from ``/v1/predict`` (the device's GCN, or its LUT),
asked about a batch of children at once: each step runs ``--batch`` tournaments on the current
population, mutates each winner at one edge, predicts all children in one call, and lets those
under the limit in, oldest out. At the end the best picks are measured on the device's agent,
and predicted and measured latency are printed side by side.

The objective is a stand-in for accuracy, which this example has no data for: the network's
parameter count (capacity under a latency budget). Plug in a real one (NAS-Bench-201's table)
through ``objective()``.

    # a lab of its own: embedded server + this machine's CPU agent; measures --measure archs,
    # trains a GCN on them, then searches (about 5 minutes on 2 cores)
    python examples/latency_constrained_search.py --limit-ms 1.0
    # an existing lab: a device with a predictor and an agent online
    python examples/latency_constrained_search.py --server URL --api-key KEY --device ID --limit-ms 5
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import secrets
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from pydantic import SecretStr

from latlab.client import Client
from latlab.opkey import graph_cost
from latlab.runtimes.onnxruntime import OnnxRuntimeConfig
from latlab.schemas import DatasetCreate, DatasetFormat
from latlab.spaces.nb201 import OPS, Nb201, Nb201Arch

SPACE = Nb201()
#: The protocol for the lab's own measurements: a stable median in about 1.5 s per arch.
PROTOCOL = OnnxRuntimeConfig(warmup_s=0.3, timed_s=1.0)


@functools.cache
def objective(index: int) -> float:
    """Higher is better: the network's parameters (a stand-in for accuracy)."""
    return float(graph_cost(SPACE.graph(SPACE.from_index(index))).params)


def mutate(arch: Nb201Arch, rng: np.random.Generator) -> Nb201Arch:
    vector = list(arch.vector)
    edge = int(rng.integers(len(vector)))
    vector[edge] = int(rng.choice([op for op in range(len(OPS)) if op != vector[edge]]))
    return SPACE.from_vector(vector)


class Predictions:
    """Batched latency queries to the server, timed."""

    def __init__(self, client: Client, device_id: str) -> None:
        self.client, self.device_id = client, device_id
        self.queries, self.seconds, self.version = 0, 0.0, ""

    def __call__(self, archs: list[Nb201Arch]) -> list[float]:
        t0 = time.perf_counter()
        out = self.client.predict(self.device_id, space="nb201", archs=[a.index for a in archs])
        self.seconds += time.perf_counter() - t0
        self.queries += len(archs)
        self.version = f"{out.predictor} {out.version}"
        return [p.latency_ms for p in out.predictions]


def search(
    predict: Predictions,
    limit_ms: float,
    population: int,
    sample: int,
    steps: int,
    batch: int,
    seed: int,
) -> list[tuple[Nb201Arch, float]]:
    """Regularised evolution under the latency limit; every feasible arch seen, with its
    predicted latency."""
    rng = np.random.default_rng(seed)
    feasible: dict[int, tuple[Nb201Arch, float]] = {}
    pop: deque[Nb201Arch] = deque()
    while len(pop) < population:
        candidates = [SPACE.from_index(int(i)) for i in rng.integers(0, SPACE.size, batch)]
        for arch, ms in zip(candidates, predict(candidates), strict=True):
            if ms <= limit_ms and arch.connected and len(pop) < population:
                pop.append(arch)
                feasible[arch.index] = (arch, ms)
    for _ in range(steps):
        members = list(pop)
        children = []
        for _ in range(batch):
            contenders = [members[int(i)] for i in rng.integers(0, len(members), sample)]
            children.append(mutate(max(contenders, key=lambda a: objective(a.index)), rng))
        for child, ms in zip(children, predict(children), strict=True):
            if ms <= limit_ms and child.connected:
                pop.append(child)
                pop.popleft()  # the oldest dies
                feasible[child.index] = (child, ms)
    return list(feasible.values())


def measure(client: Client, device_id: str, archs: list[Nb201Arch]) -> dict[str, float]:
    """Median latency (ms) of each arch, measured on the device's agent."""
    import csv
    import io

    dataset = client.create_dataset(
        DatasetCreate(
            name="search-picks",
            space="nb201",
            archs=[a.string for a in archs],
            device_ids=[device_id],
            config=PROTOCOL,
        )
    )
    client.wait_dataset(dataset.id, timeout_s=3600)
    text = client.export_dataset(dataset.id, DatasetFormat.csv).decode()
    return {r["arch"]: float(r["latency_ms"]) for r in csv.DictReader(io.StringIO(text))}


@contextlib.contextmanager
def own_lab(n_measure: int) -> Iterator[tuple[Client, str]]:
    """``latlab.lab.local`` (an embedded server and this machine's CPU agent, the timing on a
    CPU of its own); ``n_measure`` archs measured and a GCN trained on them (the ``latlab``
    preset)."""
    from latlab.lab.local import local_lab
    from latlab.predictors.pipeline import train_for_device
    from latlab.predictors.presets import PRESETS
    from latlab.server.config import Settings

    root = Path(tempfile.mkdtemp(prefix="latlab-search-"))
    api_key, enroll_key = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    settings = Settings(
        data_dir=root, api_keys=[SecretStr(api_key)], enroll_key=SecretStr(enroll_key)
    )
    with local_lab(settings) as lab:
        client, server_url, device_id = lab.client, lab.url, lab.device.id
        print(
            f"lab      {server_url}: measuring {n_measure} random NAS-Bench-201 archs on this CPU",
            flush=True,
        )
        dataset = client.create_dataset(
            DatasetCreate(
                name="search-training",
                space="nb201",
                n=n_measure,
                seed=1,
                device_ids=[device_id],
                config=PROTOCOL,
            )
        )
        client.wait_dataset(dataset.id, timeout_s=7200)
        run = train_for_device(client, device_id, PRESETS["latlab"])
        report = run.report
        t, where = (report.test, "held-out") if report.test is not None else (report.cv, "cv")
        print(
            f"gcn      trained on {len(run.data.archs)} archs; {where} {t.n}: "
            f"{100 * t.within_10pct:.0f}% within 10%, rho {t.spearman:.3f}",
            flush=True,
        )
        yield client, device_id


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit-ms", type=float, default=1.0, help="latency limit on the device")
    parser.add_argument("--steps", type=int, default=200, help="evolution steps")
    parser.add_argument("--batch", type=int, default=100, help="children per step (one query)")
    parser.add_argument("--population", type=int, default=100)
    parser.add_argument("--sample", type=int, default=25, help="tournament size")
    parser.add_argument("--picks", type=int, default=5, help="best archs measured at the end")
    parser.add_argument("--measure", type=int, default=120, help="own lab: archs to train on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--server")
    parser.add_argument("--api-key")
    parser.add_argument("--device")
    args = parser.parse_args()

    if args.server:
        if not (args.api_key and args.device):
            parser.error("--server needs --api-key and --device")
        lab: contextlib.AbstractContextManager[tuple[Client, str]] = contextlib.nullcontext(
            (Client(args.server, args.api_key), args.device)
        )
    else:
        lab = own_lab(args.measure)
    with lab as (client, device_id):
        predict = Predictions(client, device_id)
        # the first query of a predictor version builds the server's table of every arch
        t0 = time.perf_counter()
        client.predict(device_id, space="nb201", archs=[0])
        print(f"warm-up  first query {time.perf_counter() - t0:.1f} s (the server's arch table)")
        t0 = time.perf_counter()
        feasible = search(
            predict, args.limit_ms, args.population, args.sample, args.steps, args.batch, args.seed
        )
        wall = time.perf_counter() - t0
        print(
            f"search   {predict.queries:,} latency queries ({predict.version}) in {predict.seconds:.1f} s "
            f"of {wall:.1f} s: {predict.queries / predict.seconds:,.0f} queries/s; "
            f"{len(feasible):,} distinct archs under {args.limit_ms} ms"
        )
        if not feasible:
            print("no arch under the limit: raise --limit-ms", file=sys.stderr)
            return 1
        picks = sorted(feasible, key=lambda am: objective(am[0].index), reverse=True)[: args.picks]
        measured = measure(client, device_id, [a for a, _ in picks])
        print(
            f"\n{'index':>6}{'M params':>10}{'predicted ms':>14}{'measured ms':>13}{'error':>8}  arch"
        )
        within = 0
        for arch, predicted in picks:
            true = measured[arch.string]
            within += abs(predicted - true) / true <= 0.10
            print(
                f"{arch.index:>6}{objective(arch.index) / 1e6:>10.3f}{predicted:>14.3f}{true:>13.3f}"
                f"{100 * (predicted - true) / true:>+7.1f}%  {arch.string}"
            )
        under = sum(measured[a.string] <= args.limit_ms for a, _ in picks)
        print(
            f"\n{within}/{len(picks)} picks within ±10% of their measured latency; {under}/{len(picks)} measured under the limit"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
