"""A latency-constrained architecture search through the latlab SDK: NAS-Bench-201, FBNet,
Once-for-All's MobileNetV3 space or ProxylessNAS's.

Regularised evolution (Real et al., 2019) that keeps only archs whose predicted latency on a
chosen device is under a limit. Latency comes from ``/v1/predict`` (the device's GCN, or its LUT:
``--predictor``), asked about a batch of children at once: each step runs ``--batch``
tournaments on the current population, mutates each winner at one choice (an NB201 edge, an
FBNet layer, an OFA block's kernel or expansion, a stage's depth or the resolution), predicts
all children in one call, and lets those under the limit in, oldest out. At the end the best
picks are measured on the device's agent, and predicted and measured latency are printed side
by side.

The objective is a stand-in for accuracy, which this example has no data for: the network's
parameter count (capacity under a latency budget). Plug in a real one (NAS-Bench-201's table,
OFA's accuracy predictor) through ``SearchSpace.objective``.

    # a lab of its own: embedded server + this machine's CPU agent; measures --measure archs,
    # trains a GCN and a LUT on them, then searches (about 5 minutes on 2 cores for NB201)
    python examples/latency_constrained_search.py --limit-ms 1.0
    # OFA, hundreds of thousands of predictions from the layer-wise LUT
    python examples/latency_constrained_search.py --space ofa --limit-ms 15 --predictor lut \\
        --steps 300 --batch 1000
    # an existing lab: a device with a predictor and an agent online
    python examples/latency_constrained_search.py --server URL --api-key KEY --device ID \\
        --space fbnet --limit-ms 5
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import io
import secrets
import sys
import tempfile
import time
from collections import defaultdict, deque
from collections.abc import Hashable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import SecretStr

from latlab.client import Client
from latlab.opkey import graph_cost, op_cost
from latlab.runtimes.onnxruntime import OnnxRuntimeConfig
from latlab.schemas import DatasetCreate, DatasetFormat, LutCreate
from latlab.spaces import fbnet, get_space, nb201, ofa, proxyless

#: The protocol for the lab's own measurements: a stable median in about 1.5 s per arch.
PROTOCOL = OnnxRuntimeConfig(warmup_s=0.3, timed_s=1.0)
SPACES = ("nb201", "fbnet", "ofa", "proxyless")


class SearchSpace:
    """What the search needs of a space: random archs, one-choice mutations, the objective,
    which archs may enter, and the form ``/v1/predict`` is asked in."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.space: Any = get_space(name)

    def random(self, rng: np.random.Generator, n: int) -> list[Any]:
        return list(self.space.sample(n, int(rng.integers(2**31))))

    def mutate(self, arch: Any, rng: np.random.Generator) -> Any:
        """The arch with one choice changed to another value."""
        genes, radix = self.genes(arch)
        gene = int(rng.integers(len(genes)))
        genes[gene] = int(rng.choice([v for v in range(radix[gene]) if v != genes[gene]]))
        return self.from_genes(arch, genes)

    def genes(self, arch: Any) -> tuple[list[int], list[int]]:
        """The arch's choices as integers, and how many values each may take."""
        if self.name == "nb201":
            return list(arch.vector), [len(nb201.OPS)] * len(arch.vector)
        if self.name == "fbnet":
            return list(arch.ops), [len(fbnet.OPS)] * len(arch.ops)
        if self.name == "proxyless":  # a stage's first block cannot be skipped (choice 0)
            firsts = proxyless.FIRST_OF_STAGE
            return [c - f for c, f in zip(arch.choices, firsts, strict=True)], list(proxyless.RADIX)
        # OFA: the resolution, each stage's depth, and (ks, e) of each block the stage uses
        genes = [ofa.RESOLUTIONS.index(arch.resolution)]
        genes += [ofa.DEPTHS.index(d) for d in arch.depths]
        genes += [ofa.CHOICES.index(block) for stage in arch.blocks for block in stage]
        radix = [len(ofa.RESOLUTIONS)] + [len(ofa.DEPTHS)] * len(arch.depths)
        return genes, radix + [len(ofa.CHOICES)] * (len(genes) - len(radix))

    def from_genes(self, arch: Any, genes: list[int]) -> Any:
        if self.name == "nb201":
            return self.space.from_vector(genes)
        if self.name == "fbnet":
            return self.space.from_ops(genes)
        if self.name == "proxyless":
            firsts = proxyless.FIRST_OF_STAGE
            return proxyless.ProxylessArch(tuple(g + f for g, f in zip(genes, firsts, strict=True)))
        stages = len(arch.depths)
        depths = [ofa.DEPTHS[g] for g in genes[1 : 1 + stages]]
        chosen = iter(ofa.CHOICES[g] for g in genes[1 + stages :])
        blocks = [[next(chosen) for _ in stage] for stage in arch.blocks]
        # a deeper stage repeats its last block; a shallower one drops its last ones
        used = tuple(
            tuple((b + [b[-1]] * ofa.PER_STAGE)[:d]) for b, d in zip(blocks, depths, strict=True)
        )
        return ofa.OfaArch(ofa.RESOLUTIONS[genes[0]], tuple(depths), used)

    def allowed(self, arch: Any) -> bool:
        """NB201 cells whose input never reaches the output are not networks."""
        return bool(arch.connected) if self.name == "nb201" else True

    def key(self, arch: Any) -> str | int:
        """How the arch is sent to ``/v1/predict``: NB201 by index, the others by string."""
        return int(arch.index) if self.name == "nb201" else str(self.space.encode(arch))

    def objective(self, arch: Any) -> float:
        """Higher is better: the network's parameters (a stand-in for accuracy)."""
        return self._params(arch)

    @functools.cache  # noqa: B019 - one SearchSpace per run
    def _params(self, arch: Any) -> float:
        if self.name == "nb201":
            return float(graph_cost(self.space.graph(arch)).params)
        # a layer-wise network's parameters are the sum of its segments' (no graph per arch)
        # (a segment without ops, e.g. FBNet's identity skip, has none in the table)
        return float(sum(self._segment_params.get(s, 0.0) for s in self.space.segments(arch)))

    @functools.cached_property
    def _segment_params(self) -> dict[tuple[Hashable, Hashable], float]:
        found: dict[tuple[Hashable, Hashable], float] = {}
        for arch in self.space.covering():
            graph = self.space.graph(arch)
            choice = dict(self.space.segments(arch))
            sums: dict[Hashable, float] = defaultdict(float)
            for node in graph.nodes:
                sums[self.space.segment_of(arch, node.name)] += op_cost(graph, node).params
            for slot, params in sums.items():
                found[(slot, choice[slot])] = params
        return found


class Predictions:
    """Batched latency queries to the server, timed."""

    def __init__(
        self, client: Client, device_id: str, space: SearchSpace, predictor: str = "auto"
    ) -> None:
        self.client, self.device_id, self.space = client, device_id, space
        self.predictor = predictor
        self.queries, self.seconds, self.version = 0, 0.0, ""

    def __call__(self, archs: list[Any]) -> list[float]:
        t0 = time.perf_counter()
        out = self.client.predict(
            self.device_id,
            space=self.space.name,
            archs=[self.space.key(a) for a in archs],
            predictor=self.predictor,
            detail=False,  # latency only: no LUT kernel lists in a search's batches
        )
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
) -> list[tuple[Any, float]]:
    """Regularised evolution under the latency limit; every feasible arch seen, with its
    predicted latency."""
    space = predict.space
    rng = np.random.default_rng(seed)
    feasible: dict[Any, tuple[Any, float]] = {}
    pop: deque[Any] = deque()
    while len(pop) < population:
        candidates = space.random(rng, batch)
        for arch, ms in zip(candidates, predict(candidates), strict=True):
            if ms <= limit_ms and space.allowed(arch) and len(pop) < population:
                pop.append(arch)
                feasible[arch] = (arch, ms)
    for _ in range(steps):
        members = list(pop)
        children = []
        for _ in range(batch):
            contenders = [members[int(i)] for i in rng.integers(0, len(members), sample)]
            children.append(space.mutate(max(contenders, key=space.objective), rng))
        for child, ms in zip(children, predict(children), strict=True):
            if ms <= limit_ms and space.allowed(child):
                pop.append(child)
                pop.popleft()  # the oldest dies
                feasible[child] = (child, ms)
    return list(feasible.values())


def measure(
    client: Client, device_id: str, space: SearchSpace, archs: list[Any]
) -> dict[Any, float]:
    """Median latency (ms) of each arch, measured on the device's agent."""
    dataset = client.create_dataset(
        DatasetCreate(
            name="search-picks",
            space=space.name,
            archs=[space.space.encode(a) for a in archs],
            device_ids=[device_id],
            config=PROTOCOL,
        )
    )
    client.wait_dataset(dataset.id, timeout_s=3600)
    text = client.export_dataset(dataset.id, DatasetFormat.csv).decode()
    return {
        space.space.parse(r["arch"]): float(r["latency_ms"])
        for r in csv.DictReader(io.StringIO(text))
    }


@contextlib.contextmanager
def own_lab(space: str, n_measure: int) -> Iterator[tuple[Client, str]]:
    """``latlab.lab.local`` (an embedded server and this machine's CPU agent, the timing on a
    CPU of its own); ``n_measure`` archs of the space measured, a GCN trained on them (the
    ``latlab`` preset) and a LUT built from their per-op rows."""
    from latlab.lab.local import local_lab
    from latlab.lut.table import LutSource
    from latlab.predictors.pipeline import train_for_device
    from latlab.predictors.presets import PRESETS
    from latlab.progress import follow_lut
    from latlab.server.config import Settings

    root = Path(tempfile.mkdtemp(prefix="latlab-search-"))
    api_key, enroll_key = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    settings = Settings(
        data_dir=root, api_keys=[SecretStr(api_key)], enroll_key=SecretStr(enroll_key)
    )
    with local_lab(settings) as lab:
        client, server_url, device_id = lab.client, lab.url, lab.device.id
        print(
            f"lab      {server_url}: measuring {n_measure} random {space} archs on this CPU",
            flush=True,
        )
        dataset = client.create_dataset(
            DatasetCreate(
                name="search-training",
                space=space,
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
        lut = client.create_lut(
            LutCreate(
                device_id=device_id,
                source=LutSource.measured_ops,
                config=PROTOCOL,
                dataset_id=dataset.id,
            )
        )
        lut = follow_lut(client, lut.id, timeout_s=3600)
        print(f"lut      {lut.entries} kernels from the same measurements", flush=True)
        yield client, device_id


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", choices=SPACES, default="nb201")
    parser.add_argument("--limit-ms", type=float, default=1.0, help="latency limit on the device")
    parser.add_argument(
        "--predictor", default="auto", help="auto (the current one), gcn, lut or a plug-in kind"
    )
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
        lab = own_lab(args.space, args.measure)
    space = SearchSpace(args.space)
    with lab as (client, device_id):
        predict = Predictions(client, device_id, space, args.predictor)
        # the first query of a predictor version builds the server's arch table (NB201) or
        # its per-(layer, choice) pieces (layer-wise spaces)
        t0 = time.perf_counter()
        predict(space.random(np.random.default_rng(args.seed + 1), 1))
        print(f"warm-up  first query {time.perf_counter() - t0:.1f} s", flush=True)
        predict.queries, predict.seconds = 0, 0.0
        t0 = time.perf_counter()
        feasible = search(
            predict, args.limit_ms, args.population, args.sample, args.steps, args.batch, args.seed
        )
        wall = time.perf_counter() - t0
        print(
            f"search   {predict.queries:,} latency queries ({predict.version}) in "
            f"{predict.seconds:.1f} s of {wall:.1f} s: {predict.queries / predict.seconds:,.0f} "
            f"queries/s; {len(feasible):,} distinct archs under {args.limit_ms} ms"
        )
        if not feasible:
            print("no arch under the limit: raise --limit-ms", file=sys.stderr)
            return 1
        picks = sorted(feasible, key=lambda am: space.objective(am[0]), reverse=True)
        picks = picks[: args.picks]
        measured = measure(client, device_id, space, [a for a, _ in picks])
        print(f"\n{'M params':>9}{'predicted ms':>14}{'measured ms':>13}{'error':>8}  arch")
        within = 0
        for arch, predicted in picks:
            true = measured[arch]
            within += abs(predicted - true) / true <= 0.10
            print(
                f"{space.objective(arch) / 1e6:>9.3f}{predicted:>14.3f}{true:>13.3f}"
                f"{100 * (predicted - true) / true:>+7.1f}%  {space.space.encode(arch)}"
            )
        under = sum(measured[a] <= args.limit_ms for a, _ in picks)
        print(
            f"\n{within}/{len(picks)} picks within ±10% of their measured latency; "
            f"{under}/{len(picks)} measured under the limit"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
