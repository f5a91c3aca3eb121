"""Predictor accuracy on a layer-wise space (FBNet, OFA, ProxylessNAS) measured on this CPU.

A campaign of ``--n`` archs sampled from the space is measured by a local agent (onnxruntime, one
thread, the adaptive protocol; ``--data-dir`` keeps it for the next run); the last ``--test``
archs are held out, and each predictor is fitted on the first 100 and 400 (``--sizes``): the
GCN (the ``latlab`` preset, with its floor guard), the LUT from the training archs' per-op rows
(``measured-ops``), and a line through their FLOPs. Printed: share within +-10 %, MAPE,
Spearman's rho on the held-out archs.

    python bench/layerwise_accuracy.py --space fbnet --n 500 --data-dir /tmp/fbnet-lab
"""

from __future__ import annotations

import argparse
import io
import time
import zipfile
from pathlib import Path

import numpy as np
from _lab import measured_sample

from latlab.lut.table import LutSource
from latlab.metrics import RegressionMetrics, regression_metrics
from latlab.opkey import graph_cost
from latlab.predictors.features import arch_features
from latlab.predictors.presets import PRESETS
from latlab.predictors.train import train_predictor
from latlab.progress import follow_lut
from latlab.runtimes.onnxruntime import OnnxRuntimeConfig
from latlab.schemas import DatasetFormat, LutCreate, LutState
from latlab.spaces import get_space


def line(name: str, built: str, m: RegressionMetrics) -> str:
    return (
        f"{name:<22}{built:<26}{100 * m.within_10pct:>8.1f} %{100 * m.mape:>8.1f} %"
        f"{m.spearman:>9.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="fbnet")
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--test", type=int, default=100)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 400])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=Path("layerwise-lab"))
    args = parser.parse_args()
    started = time.perf_counter()
    space = get_space(args.space)
    config = OnnxRuntimeConfig(threads=1)
    with measured_sample(
        args.data_dir / args.space, f"{args.space}-accuracy", args.n, args.seed, config,
        timeout_s=6 * 3600, space=args.space,
    ) as (client, device, datasets):  # fmt: skip
        [dataset] = datasets.values()
        import pyarrow.parquet as pq

        data = client.export_dataset(dataset.id, DatasetFormat.parquet)
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            rows = pq.read_table(io.BytesIO(z.read("measurements.parquet"))).to_pylist()
            models = pq.read_table(io.BytesIO(z.read("archs.parquet"))).to_pylist()
        latency = {r["arch"]: r["median_ms"] for r in rows}
        model_of = {m["arch"]: m["model_id"] for m in models}
        order = [
            space.encode(a) for a in space.sample(args.n, args.seed) if space.encode(a) in latency
        ]
        test = order[-args.test :]
        true_ms = [latency[a] for a in test]
        macs = {a: graph_cost(space.graph(space.parse(a))).macs for a in order}
        lines = []
        for size in args.sizes:
            train = order[:size]
            y = [latency[a] for a in train]
            predictor, report = train_predictor(
                arch_features(args.space, {}, train), y, PRESETS["latlab"]
            )
            predicted, _ = predictor.predict(arch_features(args.space, {}, test))
            lines.append(
                line(
                    "GCN (latlab)",
                    f"{size} archs, {report.served}",
                    regression_metrics(predicted.tolist(), true_ms),
                )
            )
            lut = client.create_lut(
                LutCreate(
                    device_id=device.id,
                    source=LutSource.measured_ops,
                    config=config,
                    model_ids=[model_of[a] for a in train],
                )
            )
            lut = follow_lut(client, lut.id, timeout_s=3600)
            if lut.state != LutState.ready:
                raise RuntimeError(f"LUT {lut.id}: {lut.state.value} {lut.error}")
            answered = client.predict(
                device.id, space=args.space, archs=list[str | int](test), version=lut.id
            )
            lines.append(
                line(
                    "LUT measured-ops", f"{size} archs, {lut.entries} kernels",
                    regression_metrics([p.latency_ms for p in answered.predictions], true_ms),
                )
            )  # fmt: skip
            slope, intercept = np.polyfit([macs[a] for a in train], y, 1)
            lines.append(
                line(
                    "FLOPs-linear", f"{size} archs",
                    regression_metrics([slope * macs[a] + intercept for a in test], true_ms),
                )
            )  # fmt: skip
    print(
        f"\n{args.space}: {len(order)} archs measured on {device.descriptor.cpu_model} "
        f"(onnxruntime, 1 thread); held out: the last {len(test)}; "
        f"latency {min(true_ms):.2f}..{max(true_ms):.2f} ms"
    )
    print(f"{'predictor':<22}{'fitted on':<26}{'+-10 %':>10}{'MAPE':>10}{'rho':>9}")
    for text in lines:
        print(text)
    print(f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
