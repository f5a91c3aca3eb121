"""How accurate are the learned predictors, on this machine's CPU in both graph forms and on 13
published devices, and how long do they take to train?

(a) own data: N NAS-Bench-201 archs (default 1,000) measured on this machine's CPU with the
    dataset builder (embedded server + one ``latlab agent``, the timing pinned to the last CPU;
    ``--data-dir`` keeps and reuses them), each arch twice: in the pruned form (dead ops left
    out) and in the eager form (every op computed, as NAS-Bench-201's PyTorch code runs it);
(b) the 13 LatBench devices of ../shared/data/latbench/, imported with the dataset importer
    (real phones, Jetson, Edge TPU, DSPs nobody here measured).

For each device and each training size (default 100 and 900), every predictor is trained on the
same archs and scored on all the others: the ``latlab`` predictor (GCN members over 5 folds, the
floor guard; ``--presets latlab,brp-nas`` adds the BRP-NAS reproduction), the LUT (own data:
measured-ops, built from the training archs' per-op rows), and the two floors: FLOPs-linear and
a linear model on the one-hot arch encoding. Printed per row: share within ±10 % (nn-Meter's
convention), RMSE (ms), Spearman rho, Kendall tau, the seconds to fit and, for the predictor,
what its floor guard serves. Goals at 900: above both floors on every device and data form; own
CPU >= 99 % within ±10 %; LatBench mean rho >= 0.97; <= 60 s training per device.

    python bench/predictor_accuracy.py [--n 1000] [--sizes 100 900] [--presets latlab]
        [--data-dir DIR] [--skip-own] [--skip-latbench] [--devices SUBSTRING ...]
"""

from __future__ import annotations

import argparse
import io
import secrets
import tempfile
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
from _lab import measured_sample
from pydantic import SecretStr

from latlab.client import Client
from latlab.metrics import RegressionMetrics, regression_metrics
from latlab.predictors.features import arch_features
from latlab.predictors.floors import flops_linear, onehot_linear
from latlab.predictors.presets import PRESETS
from latlab.predictors.train import train_predictor
from latlab.runtimes.onnxruntime import OnnxRuntimeConfig
from latlab.schemas import DatasetFormat, DatasetOut, LutCreate, LutSource
from latlab.server.config import Settings
from latlab.server.embedded import EmbeddedServer
from latlab.spaces import GraphForm, get_space

LATBENCH = Path(__file__).resolve().parents[2] / "shared" / "data" / "latbench"
#: The own-data campaigns' protocol: 1 s of timed runs is plenty for a stable median (the
#: local lab times on a CPU of its own, the server and the rest of the agent elsewhere).
CONFIG = OnnxRuntimeConfig(warmup_s=0.5, timed_s=1.0)

#: source, device, train size, predictor, metrics, seconds, what the guard serves
Row = tuple[str, str, int, str, RegressionMetrics, float, str]
FLOORS = ("FLOPs-linear", "one-hot linear")


def evaluate(
    source: str,
    device: str,
    archs: list[str],
    latency_ms: list[float],
    args: argparse.Namespace,
    presets: list[str],
    form: GraphForm = GraphForm.pruned,
    lut_predict: object | None = None,
) -> list[Row]:
    rows: list[Row] = []
    y = np.asarray(latency_ms)
    features = arch_features("nb201", {}, archs)
    order = np.random.default_rng(args.seed).permutation(len(archs))
    for size in args.sizes:
        fit = sorted(int(i) for i in order[:size])
        test = sorted(int(i) for i in order[size:])
        train_archs, test_archs = [archs[i] for i in fit], [archs[i] for i in test]
        true = y[test]

        def add(
            name: str,
            predicted: object,
            seconds: float,
            served: str = "",
            true: np.ndarray = true,
            size: int = size,
        ) -> None:
            metrics = regression_metrics(np.asarray(predicted).tolist(), true.tolist())
            rows.append((source, device, size, name, metrics, seconds, served))

        t0 = time.perf_counter()
        add(
            "FLOPs-linear",
            flops_linear(train_archs, y[fit].tolist(), test_archs, form),
            time.perf_counter() - t0,
        )
        t0 = time.perf_counter()
        add(
            "one-hot linear",
            onehot_linear(train_archs, y[fit].tolist(), test_archs),
            time.perf_counter() - t0,
        )
        if lut_predict is not None:
            t0 = time.perf_counter()
            add("LUT measured-ops", lut_predict(train_archs, test_archs), time.perf_counter() - t0)  # type: ignore[operator]
        for preset in presets:
            config = PRESETS[preset]
            if args.epochs is not None:
                config = replace(config, epochs=args.epochs)
            predictor, report = train_predictor(features, latency_ms, config, test=test)
            predicted, _ = predictor.predict([features[i] for i in test])
            add(f"GCN {preset}", predicted, report.train_s, report.served)
        print_rows(rows[-(2 + (lut_predict is not None) + len(presets)) :])
    return rows


def print_rows(rows: list[Row]) -> None:
    for source, device, size, name, m, seconds, served in rows:
        print(
            f"{source:<9}{device[:34]:<35}{size:>5}  {name:<17}{100 * m.within_10pct:>8.1f}%"
            f"{m.rmse_ms:>10.4f}{m.spearman:>8.4f}{m.kendall:>8.4f}{seconds:>8.1f}  {served}",
            flush=True,
        )


def own_data(args: argparse.Namespace, presets: list[str]) -> list[Row]:
    name = f"predictor-bench-nb201-{args.n}-seed{args.seed}"
    root = args.data_dir or Path(tempfile.mkdtemp(prefix="latlab-pred-bench-"))
    forms = (GraphForm.pruned, GraphForm.eager)
    rows: list[Row] = []
    medians: dict[GraphForm, dict[str, float]] = {}
    with measured_sample(
        root, name, args.n, args.seed, CONFIG, timeout_s=7 * 24 * 3600, forms=forms
    ) as (client, device, datasets):
        for form, dataset in datasets.items():
            medians[form], form_rows = _own_form(
                client, device.id, device.descriptor.cpu_model, form, dataset, args, presets
            )
            rows += form_rows
    repeatability(medians)
    return rows


def repeatability(medians: dict[GraphForm, dict[str, float]]) -> None:
    """The archs without dead ops are the same network in both forms, measured twice by two
    campaigns: how far apart the two medians are is the ceiling on any predictor's accuracy."""
    space = get_space("nb201")
    pruned, eager = medians[GraphForm.pruned], medians[GraphForm.eager]
    twice = [
        (pruned[a], eager[a])
        for a in sorted(set(pruned) & set(eager))
        if [n.name for n in space.graph(space.parse(a), GraphForm.pruned).nodes]
        == [n.name for n in space.graph(space.parse(a), GraphForm.eager).nodes]
    ]
    if not twice:
        return
    first, second = np.array(twice).T
    deviation = np.abs(second / first - 1)
    print(
        f"repeatability: {len(twice)} archs without dead ops measured once in each campaign: "
        f"{100 * np.mean(deviation <= 0.10):.1f}% of the pairs within ±10% of each other, "
        f"{100 * np.mean(deviation <= 0.05):.1f}% within ±5%, median deviation "
        f"{100 * np.median(deviation):.1f}%",
        flush=True,
    )


def _own_form(
    client: Client,
    device_id: str,
    cpu: str,
    form: GraphForm,
    dataset: DatasetOut,
    args: argparse.Namespace,
    presets: list[str],
) -> tuple[dict[str, float], list[Row]]:
    with zipfile.ZipFile(io.BytesIO(client.export_dataset(dataset.id, DatasetFormat.parquet))) as z:
        import pyarrow.parquet as pq

        arch_rows = pq.read_table(io.BytesIO(z.read("archs.parquet"))).to_pylist()
        measured = pq.read_table(io.BytesIO(z.read("measurements.parquet"))).to_pylist()
    median = {m["arch"]: m["median_ms"] for m in measured}
    model_of = {a["arch"]: a["model_id"] for a in arch_rows}
    archs = [a["arch"] for a in arch_rows if a["arch"] in median]
    config = dataset.config or CONFIG

    def lut_predict(train_archs: list[str], test_archs: list[str]) -> list[float]:
        lut = client.create_lut(
            LutCreate(
                device_id=device_id,
                source=LutSource.measured_ops,
                config=config,
                model_ids=[model_of[a] for a in train_archs],
            )
        )
        lut = client.wait_lut(lut.id, timeout_s=3600)
        out = client.predict(device_id, model_ids=[model_of[a] for a in test_archs], version=lut.id)
        return [p.latency_ms for p in out.predictions]

    label = f"{cpu} ({form}, ort 1 thread)"
    return median, evaluate(
        "own-cpu", label, archs, [median[a] for a in archs], args, presets, form, lut_predict
    )


def latbench(args: argparse.Namespace, presets: list[str]) -> list[Row]:
    files = sorted(LATBENCH.glob("*.pickle"))
    if args.devices:
        files = [f for f in files if any(s in f.stem for s in args.devices)]
    with tempfile.TemporaryDirectory() as tmp:
        api_key = secrets.token_urlsafe(16)
        settings = Settings(data_dir=Path(tmp), api_keys=[SecretStr(api_key)])
        with EmbeddedServer(settings) as server, Client(server.url, api_key) as client:
            dataset = client.import_dataset(files, "latbench", note="BRP-NAS / Eagle, Apache-2.0")
            rows: list[Row] = []
            for device_id in dataset.device_ids:
                device = client.device(device_id)
                data = client.dataset_rows(dataset.id, device_id)
                archs = [r["arch"] for r in data]
                latency = [float(r["latency_ms"]) for r in data]
                rows += evaluate("latbench", device.name, archs, latency, args, presets)
    return rows


def summary(rows: list[Row], sizes: list[int], presets: list[str]) -> None:
    big = max(sizes)
    print(f"\nsummary at {big} training archs")
    own = [r for r in rows if r[0] == "own-cpu" and r[2] == big]
    for _, device, _, name, m, _, served in own:
        print(
            f"  own {device[-24:]:<25}{name:<17} {100 * m.within_10pct:6.1f}% within ±10%  "
            f"rho {m.spearman:.4f}  tau {m.kendall:.4f}  {served}"
        )
    lat = [r for r in rows if r[0] == "latbench" and r[2] == big]
    for name in sorted({r[3] for r in lat}):
        rhos = [r[4].spearman for r in lat if r[3] == name]
        within = [r[4].within_10pct for r in lat if r[3] == name]
        print(
            f"  LatBench {name:<17} mean rho {np.mean(rhos):.4f} (min {np.min(rhos):.4f}), "
            f"mean within ±10% {100 * np.mean(within):.1f}% over {len(rhos)} devices"
        )
    for preset in presets:
        gcn = f"GCN {preset}"
        at_size = [r for r in rows if r[2] == big]
        devices = sorted({(r[0], r[1]) for r in at_size})
        above = {"rho": 0, "tau": 0, "±10%": 0}
        for key in devices:
            by_name = {r[3]: r[4] for r in at_size if (r[0], r[1]) == key}
            if gcn not in by_name:
                continue
            m = by_name[gcn]
            floors = [by_name[f] for f in FLOORS]
            above["rho"] += m.spearman > max(f.spearman for f in floors)
            above["tau"] += m.kendall > max(f.kendall for f in floors)
            above["±10%"] += m.within_10pct > max(f.within_10pct for f in floors)
        times = [r[5] for r in at_size if r[3] == gcn]
        serving = sorted({r[6] for r in at_size if r[3] == gcn})
        print(
            f"  {gcn} above both floors on {len(devices)} devices and forms: "
            + ", ".join(f"{k} {v}" for k, v in above.items())
            + f"; train {np.mean(times):.1f} s mean, {np.max(times):.1f} s max; serves {serving}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="own-data archs to measure")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 900])
    parser.add_argument("--presets", default="latlab", help="comma-separated: latlab,brp-nas")
    parser.add_argument("--epochs", type=int, help="override the presets' epochs (quick runs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, help="keep (and reuse) the own-data server here")
    parser.add_argument("--skip-own", action="store_true")
    parser.add_argument("--skip-latbench", action="store_true")
    parser.add_argument(
        "--devices", nargs="+", help="only LatBench devices whose name contains one"
    )
    args = parser.parse_args()
    presets = [p for p in args.presets.split(",") if p]
    unknown = set(presets) - set(PRESETS)
    if unknown:
        raise SystemExit(f"unknown presets {unknown}; known: {', '.join(PRESETS)}")
    print(
        f"{'source':<9}{'device':<35}{'train':>5}  {'predictor':<17}{'within10':>9}"
        f"{'RMSE ms':>10}{'rho':>8}{'tau':>8}{'fit s':>8}"
    )
    rows: list[Row] = []
    if not args.skip_own:
        rows += own_data(args, presets)
    if not args.skip_latbench:
        rows += latbench(args, presets)
    summary(rows, args.sizes, presets)


if __name__ == "__main__":
    main()
