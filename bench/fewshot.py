"""A new device from k measurements: the transfer predictor, leave one device out.

Targets: the 13 LatBench devices of ../shared/data/latbench/ (published NAS-Bench-201
latencies of phones, Jetson, an Edge TPU, DSPs) and this machine's CPU (N NAS-Bench-201 archs
measured by a local lab in both graph forms, each form one target; ``--data-dir`` keeps them).
Sources of a target: every other device with at least half as many archs as the best-covered
(so the 13 LatBench devices, less the target; the local CPU's few hundred archs are too few to
be a source).

For each target, k (default 5, 10, 20, 50) and seed (default 5): k archs of the target's data
are chosen (``latlab.predictors.transfer.choose``) or drawn at random, and on all the target's
other archs this prints the mean Spearman rho, Kendall tau and share within +-10 % (nn-Meter's
convention) of

- ``transfer``: the transfer predictor (latlab adapt) on the chosen archs and on random ones;
- ``ridge``: a ridge regression over the sources' standardised log latencies (penalty by
  leave-one-out) on the same archs;
- ``gcn``: the latlab GCN (preset ``latlab``, floor guard on) trained from scratch on the chosen
  archs (``--skip-gcn`` leaves it out: 5-10 s per fit).

Goals at k = 20: mean rho >= 0.95; transfer above gcn and ridge on every target. Also printed:
the device time the k measurements take on the local CPU (its campaign's seconds per arch).

    python bench/fewshot.py [--ks 5 10 20 50] [--seeds 5] [--n-local 300] [--data-dir DIR]
        [--skip-local] [--skip-gcn] [--devices SUBSTRING ...]
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from _lab import measured_sample

from latlab.datasets.latbench import MS_PER_S, read_latbench_pickle
from latlab.metrics import regression_metrics
from latlab.predictors.features import arch_features
from latlab.predictors.presets import PRESETS
from latlab.predictors.train import train_predictor
from latlab.predictors.transfer import (
    SourceTable,
    TransferBasis,
    choose,
    fit_transfer,
    guard,
    served_predictions,
)
from latlab.runtimes.onnxruntime import OnnxRuntimeConfig
from latlab.schemas import DatasetFormat
from latlab.spaces import GraphForm
from latlab.spaces.nb201 import Nb201

LATBENCH = Path(__file__).resolve().parents[2] / "shared" / "data" / "latbench"
CONFIG = OnnxRuntimeConfig(warmup_s=0.5, timed_s=1.0)
PENALTIES = 10.0 ** np.arange(-4.0, 4.01, 0.5)

Latencies = dict[str, dict[str, float]]  # device -> arch -> ms


@dataclass(frozen=True)
class Score:
    target: str
    k: int
    method: str
    rho: float
    tau: float
    within_10pct: float


def latbench() -> Latencies:
    space = Nb201()
    out: Latencies = {}
    for path in sorted(LATBENCH.glob("*.pickle")):
        table = read_latbench_pickle(path.read_bytes(), path.name)
        out[path.stem] = {
            space.encode(space.from_vector(v)): s * MS_PER_S for v, s in table.items()
        }
    return out


def local_cpu(args: argparse.Namespace) -> tuple[Latencies, float]:
    """This CPU's latencies per form, and its campaigns' device seconds per arch."""
    root = args.data_dir or Path(tempfile.mkdtemp(prefix="latlab-fewshot-"))
    name = f"fewshot-nb201-{args.n_local}"
    forms = (GraphForm.pruned, GraphForm.eager)
    out: Latencies = {}
    seconds, count = 0.0, 0
    with measured_sample(root, name, args.n_local, 0, CONFIG, 7 * 24 * 3600, forms) as (
        client,
        device,
        datasets,
    ):
        for form, dataset in datasets.items():
            data = client.export_dataset(dataset.id, DatasetFormat.parquet)
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                import pyarrow.parquet as pq

                rows = pq.read_table(io.BytesIO(z.read("measurements.parquet"))).to_pylist()
            out[f"local {device.descriptor.cpu_model} ({form})"] = {
                r["arch"]: r["median_ms"] for r in rows
            }
            times = sorted(datetime.fromisoformat(str(r["created_at"])) for r in rows)
            seconds += (times[-1] - times[0]).total_seconds()
            count += len(rows) - 1
    return out, seconds / max(count, 1)


def ridge_over_sources(
    basis: TransferBasis, archs: Sequence[str], latency_ms: Sequence[float]
) -> np.ndarray:
    """Log latency of every table arch: a ridge over the sources' standardised log latencies
    (a source's missing archs filled in as the transfer basis fills them)."""
    z = basis.z
    design = np.column_stack([np.ones(len(z)), z])
    a, y = design[basis.rows(archs)], np.log(np.asarray(latency_ms))

    def fit(penalty: float) -> tuple[np.ndarray, np.ndarray]:
        p = np.eye(a.shape[1]) * penalty
        p[0, 0] = 0.0
        inverse = np.linalg.inv(a.T @ a + p)
        return inverse @ a.T @ y, a @ inverse @ a.T

    def loo(penalty: float) -> float:
        w, hat = fit(penalty)
        return float(np.mean(((y - a @ w) / np.maximum(1 - np.diag(hat), 1e-9)) ** 2))

    w, _ = fit(min(PENALTIES, key=loo))
    return np.asarray(design @ w)


def score(
    target: str,
    k: int,
    method: str,
    predicted_ms: np.ndarray,
    true_ms: Sequence[float],
) -> Score:
    m = regression_metrics(predicted_ms.tolist(), list(true_ms))
    return Score(target, k, method, m.spearman, m.kendall, m.within_10pct)


def evaluate_target(
    target: str, data: Latencies, args: argparse.Namespace, gcn: Callable[..., np.ndarray] | None
) -> list[Score]:
    own_ms = data[target]
    most = max(len(t) for name, t in data.items() if name != target)
    sources = {n: t for n, t in data.items() if n != target and len(t) >= 0.5 * most}
    basis = TransferBasis.of(SourceTable.of(sources))
    table = list(basis.table.archs)
    candidates = [a for a in table if a in own_ms]
    scores: list[Score] = []
    for k in args.ks:
        served: list[str] = []
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            drawn = [candidates[int(i)] for i in rng.choice(len(candidates), k, replace=False)]
            picked = choose(basis, k, seed, candidates)
            for how, archs in (("chosen", picked), ("random", drawn)):
                used = set(archs)
                test = [a for a in candidates if a not in used]
                rows = basis.rows(test)
                true = [own_ms[a] for a in test]
                y = [own_ms[a] for a in archs]
                own = arch_features("nb201", {}, archs)
                chosen = guard(basis, archs, y, own)
                log_mean, _ = served_predictions(
                    basis, archs, y, chosen, lambda: arch_features("nb201", {}, table), own
                )
                scores.append(score(target, k, f"transfer {how}", np.exp(log_mean[rows]), true))
                ridge = ridge_over_sources(basis, archs, y)
                scores.append(score(target, k, f"ridge {how}", np.exp(ridge[rows]), true))
                if how == "chosen":
                    served.append(chosen.served)
                    alone = fit_transfer(basis, archs, y)
                    scores.append(
                        score(target, k, "unguarded chosen", np.exp(alone.log_mean[rows]), true)
                    )
                    if gcn is not None:
                        scores.append(score(target, k, "gcn chosen", gcn(archs, y, test), true))
        print_block([s for s in scores if s.k == k], target, k)
        print(f"{'':<51}served (chosen): {', '.join(sorted(set(served)))}", flush=True)
    return scores


def gcn_from_scratch(
    archs: Sequence[str], latency_ms: Sequence[float], test: Sequence[str]
) -> np.ndarray:
    features = arch_features("nb201", {}, list(archs))
    predictor, _ = train_predictor(features, list(latency_ms), PRESETS["latlab"])
    predicted, _ = predictor.predict(arch_features("nb201", {}, list(test)))
    return np.asarray(predicted)


def _mean(scores: Sequence[Score], attribute: str) -> float:
    return float(np.mean([getattr(s, attribute) for s in scores]))


def by_method(scores: Sequence[Score]) -> Mapping[str, list[Score]]:
    out: dict[str, list[Score]] = {}
    for s in scores:
        out.setdefault(s.method, []).append(s)
    return out


def print_block(scores: Sequence[Score], target: str, k: int) -> None:
    for method, group in by_method(scores).items():
        print(
            f"{target[:44]:<45}{k:>4}  {method:<17}{_mean(group, 'rho'):>8.4f}"
            f"{_mean(group, 'tau'):>8.4f}{100 * _mean(group, 'within_10pct'):>9.1f}%",
            flush=True,
        )


def summary(scores: Sequence[Score], ks: Sequence[int], seconds_per_arch: float | None) -> None:
    print("\nmean over targets (each target's mean over seeds)")
    print(f"{'k':>4}  {'method':<17}{'rho':>8}{'tau':>8}{'within10':>10}")
    targets = sorted({s.target for s in scores})
    for k in ks:
        for method, group in by_method([s for s in scores if s.k == k]).items():
            per = [[s for s in group if s.target == t] for t in targets]
            rho = np.mean([_mean(p, "rho") for p in per if p])
            tau = np.mean([_mean(p, "tau") for p in per if p])
            within = np.mean([_mean(p, "within_10pct") for p in per if p])
            print(f"{k:>4}  {method:<17}{rho:>8.4f}{tau:>8.4f}{100 * within:>9.1f}%")
    if 20 in ks:
        at = [s for s in scores if s.k == 20]
        means = {
            (t, m): _mean(g, "rho")
            for t in targets
            for m, g in by_method([s for s in at if s.target == t]).items()
        }
        mean_rho = np.mean([means[(t, "transfer chosen")] for t in targets])
        print(f"\ngoal at k=20: mean rho {mean_rho:.4f} (>= 0.95: {mean_rho >= 0.95})")
        for rival in ("gcn chosen", "ridge chosen"):
            rivals = [t for t in targets if (t, rival) in means]
            if not rivals:
                continue
            losing = [t for t in rivals if means[(t, "transfer chosen")] <= means[(t, rival)]]
            print(
                f"transfer chosen above {rival} on {len(rivals) - len(losing)} of {len(rivals)}"
                " targets" + (f"; not on: {', '.join(losing)}" if losing else "")
            )
    if seconds_per_arch is not None:
        line = ", ".join(f"k={k}: {k * seconds_per_arch:.0f} s" for k in ks)
        print(
            f"device time on the local CPU ({seconds_per_arch:.1f} s per arch in its campaign): {line}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", type=int, nargs="+", default=[5, 10, 20, 50])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--n-local", type=int, default=300, help="local CPU archs to measure")
    parser.add_argument("--data-dir", type=Path, help="keep (and reuse) the local lab here")
    parser.add_argument("--skip-local", action="store_true")
    parser.add_argument("--skip-gcn", action="store_true")
    parser.add_argument("--devices", nargs="+", help="only targets whose name contains one")
    args = parser.parse_args()
    started = time.perf_counter()
    data = latbench()
    seconds_per_arch = None
    if not args.skip_local:
        local, seconds_per_arch = local_cpu(args)
        data.update(local)
    targets = [t for t in data if not args.devices or any(s in t for s in args.devices)]
    print(f"{'target':<45}{'k':>4}  {'method':<17}{'rho':>8}{'tau':>8}{'within10':>10}")
    scores: list[Score] = []
    for target in targets:
        scores += evaluate_target(target, data, args, None if args.skip_gcn else gcn_from_scratch)
    summary(scores, args.ks, seconds_per_arch)
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
