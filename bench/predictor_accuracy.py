"""How accurate are the learned predictors, on this machine's CPU and on 13 published devices?

(a) own data: N NAS-Bench-201 archs (default 1,000) measured on this machine's CPU with the
    dataset builder (embedded server + one ``latlab agent``; ``--data-dir`` keeps and reuses
    them); (b) the 13 LatBench devices of ../shared/data/latbench/, imported with the dataset
    importer (real phones, Jetson, Edge TPU, DSPs nobody here measured).

For each device and each training size (default 100 and 900: 90 % train, 10 % validation for
early stopping), every predictor is trained on the same archs and scored on all the others:
the GCN (latlab preset; ``--presets latlab,brp-nas`` adds the BRP-NAS reproduction), the LUT
(own data only: measured-ops, built from the training archs' per-op rows), and two floors:
FLOPs-linear and a linear model on the one-hot arch encoding. Printed per row: share within
±10 % (nn-Meter's convention), RMSE (ms), Spearman rho and Kendall tau; then the summary the
goals are stated in. Goals at 900: own CPU >= 99 % within ±10 %; LatBench mean rho >= 0.95 and
the GCN above both floors on every device.

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
from latlab.schemas import DatasetFormat, LutCreate, LutSource, RuntimeConfig
from predictors.floors import flops_linear, onehot_linear
from predictors.pipeline import features_of
from predictors.presets import PRESETS
from predictors.train import split_indices, train_gcn
from server.config import Settings
from server.embedded import EmbeddedServer

LATBENCH = Path(__file__).resolve().parents[2] / "shared" / "data" / "latbench"
#: The protocol of the own-data campaign: 1 s of timed runs is plenty for a stable median.
CONFIG = RuntimeConfig(warmup_s=0.5, timed_s=1.0)

Row = tuple[
    str, str, int, str, RegressionMetrics, float
]  # source, device, n, predictor, metrics, s


def evaluate(
    source: str,
    device: str,
    archs: list[str],
    latency_ms: list[float],
    sizes: list[int],
    presets: list[str],
    seed: int,
    epochs: int | None,
    lut_predict: object | None = None,
) -> list[Row]:
    rows: list[Row] = []
    y = np.asarray(latency_ms)
    features = features_of("nb201", {}, archs)
    for size in sizes:
        n_val = max(1, size // 10)
        split = split_indices(len(archs), size - n_val, n_val, seed)
        fit = list(split.train + split.val)
        test = list(split.test)
        train_archs, test_archs = [archs[i] for i in fit], [archs[i] for i in test]
        true = y[test]

        def add(
            name: str, predicted: object, seconds: float, true: np.ndarray = true, size: int = size
        ) -> None:
            metrics = regression_metrics(np.asarray(predicted).tolist(), true.tolist())
            rows.append((source, device, size, name, metrics, seconds))

        for name, floor in (("FLOPs-linear", flops_linear), ("one-hot linear", onehot_linear)):
            t0 = time.perf_counter()
            add(name, floor(train_archs, y[fit].tolist(), test_archs), time.perf_counter() - t0)
        if lut_predict is not None:
            t0 = time.perf_counter()
            add("LUT measured-ops", lut_predict(train_archs, test_archs), time.perf_counter() - t0)  # type: ignore[operator]
        for preset in presets:
            config = PRESETS[preset] if epochs is None else replace(PRESETS[preset], epochs=epochs)
            t0 = time.perf_counter()
            predictor, _ = train_gcn(features, latency_ms, config, split)
            predicted, _ = predictor.predict([features[i] for i in test])
            add(f"GCN {preset}", predicted, time.perf_counter() - t0)
        print_rows(rows[-(2 + (lut_predict is not None) + len(presets)) :])
    return rows


def print_rows(rows: list[Row]) -> None:
    for source, device, size, name, m, seconds in rows:
        print(
            f"{source:<9}{device[:34]:<35}{size:>5}  {name:<17}{100 * m.within_10pct:>8.1f}%"
            f"{m.rmse_ms:>10.4f}{m.spearman:>8.4f}{m.kendall:>8.4f}{seconds:>8.1f}",
            flush=True,
        )


def own_data(args: argparse.Namespace, presets: list[str]) -> list[Row]:
    name = f"predictor-bench-nb201-{args.n}-seed{args.seed}"
    root = args.data_dir or Path(tempfile.mkdtemp(prefix="latlab-pred-bench-"))
    with measured_sample(root, name, args.n, args.seed, CONFIG, timeout_s=7 * 24 * 3600) as (
        client,
        device,
        dataset,
    ):
        with zipfile.ZipFile(
            io.BytesIO(client.export_dataset(dataset.id, DatasetFormat.parquet))
        ) as z:
            import pyarrow.parquet as pq

            arch_rows = pq.read_table(io.BytesIO(z.read("archs.parquet"))).to_pylist()
            measured = pq.read_table(io.BytesIO(z.read("measurements.parquet"))).to_pylist()
        median = {m["arch"]: m["median_ms"] for m in measured}
        model_of = {a["arch"]: a["model_id"] for a in arch_rows}
        archs = [a["arch"] for a in arch_rows if a["arch"] in median]

        def lut_predict(train_archs: list[str], test_archs: list[str]) -> list[float]:
            lut = client.create_lut(
                LutCreate(
                    device_id=device.id,
                    source=LutSource.measured_ops,
                    config=CONFIG,
                    model_ids=[model_of[a] for a in train_archs],
                )
            )
            lut = client.wait_lut(lut.id, timeout_s=3600)
            out = client.predict(
                device.id, model_ids=[model_of[a] for a in test_archs], version=lut.id
            )
            return [p.latency_ms for p in out.predictions]

        label = f"{device.descriptor.cpu_model} (onnxruntime, 1 thread)"
        return evaluate(
            "own-cpu",
            label,
            archs,
            [median[a] for a in archs],
            args.sizes,
            presets,
            args.seed,
            args.epochs,
            lut_predict,
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
                rows += evaluate(
                    "latbench",
                    device.name,
                    archs,
                    latency,
                    args.sizes,
                    presets,
                    args.seed,
                    args.epochs,
                )
    return rows


def summary(rows: list[Row], sizes: list[int], presets: list[str]) -> None:
    big = max(sizes)
    print(f"\nsummary at {big} training archs")
    own = [r for r in rows if r[0] == "own-cpu" and r[2] == big]
    for _, _, _, name, m, _ in own:
        print(
            f"  own CPU {name:<17} {100 * m.within_10pct:6.1f}% within ±10%  rho {m.spearman:.4f}"
        )
    lat = [r for r in rows if r[0] == "latbench" and r[2] == big]
    if not lat:
        return
    names = sorted({r[3] for r in lat})
    for name in names:
        rhos = [r[4].spearman for r in lat if r[3] == name]
        within = [r[4].within_10pct for r in lat if r[3] == name]
        print(
            f"  LatBench {name:<17} mean rho {np.mean(rhos):.4f} (min {np.min(rhos):.4f}), "
            f"mean within ±10% {100 * np.mean(within):.1f}% over {len(rhos)} devices"
        )
    for preset in presets:
        gcn = f"GCN {preset}"
        beaten = 0
        devices = sorted({r[1] for r in lat})
        for device in devices:
            by_name = {r[3]: r[4].spearman for r in lat if r[1] == device}
            beaten += by_name[gcn] > max(by_name["FLOPs-linear"], by_name["one-hot linear"])
        print(f"  {gcn} above both floors (rho) on {beaten} of {len(devices)} LatBench devices")


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
