"""How accurate are the LUTs on this machine's CPU?

N NAS-Bench-201 archs (default 200) are measured end to end through a campaign (embedded server
+ one ``latlab agent`` process, the protocol's defaults, per-op profiles on). Two LUTs are built
from the first ``--train`` of them (by sample order): from their per-op rows (measured-ops),
and from one micro-model per kernel timed on the agent (micro-models); both are calibrated on
those same archs' end-to-end medians. All predictors are then scored on the other archs, next
to a FLOPs-only linear fit on the same training archs. Printed: share within ±10 % of the
measured median (nn-Meter's convention), RMSE (ms), MAPE and Spearman rho, Kendall tau.
Goal: LUT within ±10 % for >= 90 % of archs, clearly above the FLOPs baseline.

The ground truth is checked too: the last ``--remeasure`` test archs (default 50) are measured
again in reverse order as a second campaign, and the two medians compared (median |relative
difference|, share within 1/3/5/10 %). A ground truth that moves caps every predictor's
"within ±10 %". The timing runs on a CPU of its own (``latlab.lab.local``); each measurement's
provenance says what else ran there, summarised at the end.

    python bench/lut_accuracy.py [--n 200] [--train 100] [--seed 0] [--remeasure 50]
                                 [--data-dir DIR]

``--data-dir`` keeps the server's data; run again with the same directory to rebuild the LUTs
on the stored measurements without measuring again.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from _lab import measured_sample

from latlab.client import Client
from latlab.metrics import RegressionMetrics, regression_metrics
from latlab.opkey import graph_cost
from latlab.progress import follow_dataset, follow_lut
from latlab.runtimes import RuntimeConfig
from latlab.runtimes.onnxruntime import OnnxRuntimeConfig
from latlab.schemas import DatasetCreate, DatasetFormat, LutCreate, LutSource
from latlab.spaces import GraphForm, get_space

CONFIG = OnnxRuntimeConfig()
#: Micro-models are microsecond kernels: a shorter protocol (same runtime identity).
MICRO_CONFIG = CONFIG.model_copy(update={"warmup_s": 0.2, "timed_s": 0.5})


def measured_archs(client: Client, dataset_id: str) -> list[tuple[str, str, float]]:
    """(arch, model_id, median_ms) in the campaign's sample order, from its Parquet export."""
    import pyarrow.parquet as pq

    with zipfile.ZipFile(io.BytesIO(client.export_dataset(dataset_id, DatasetFormat.parquet))) as z:
        archs = pq.read_table(io.BytesIO(z.read("archs.parquet"))).to_pylist()
        measured = pq.read_table(io.BytesIO(z.read("measurements.parquet"))).to_pylist()
    median = {m["arch"]: m["median_ms"] for m in measured}
    return [(a["arch"], a["model_id"], median[a["arch"]]) for a in archs if a["arch"] in median]


def lut_result(
    client: Client,
    device_id: str,
    source: LutSource,
    config: RuntimeConfig,
    train_ids: list[str],
    test: list[tuple[str, str, float]],
    true_ms: list[float],
) -> tuple[str, str, RegressionMetrics, str]:
    """Build a LUT from the training models, score it on the test models."""
    t0 = time.monotonic()
    lut = client.create_lut(
        LutCreate(device_id=device_id, source=source, config=config, model_ids=train_ids)
    )
    lut = follow_lut(client, lut.id, timeout_s=24 * 3600)
    build_s = time.monotonic() - t0
    if lut.state != "ready" or lut.calibration is None:
        raise SystemExit(f"LUT {lut.id} {lut.state}: {lut.error}")
    t0 = time.monotonic()
    out = client.predict(device_id, model_ids=[m for _, m, _ in test], version=lut.id)
    predict_s = time.monotonic() - t0
    estimated = sum(1 for p in out.predictions if p.estimated)
    cal = lut.calibration
    return (
        f"LUT {source.value}",
        f"{lut.entries} kernels, {len(train_ids)} archs",
        regression_metrics([p.latency_ms for p in out.predictions], true_ms),
        f"calibration x{cal.scale:.3f}, {cal.per_kernel_us:+.3f} us/kernel, {cal.constant_ms:+.4f} ms; "
        f"built in {build_s:.1f} s; {len(test)} predictions in {predict_s:.2f} s; "
        f"{estimated} archs with estimated kernels",
    )


def row(name: str, built_from: str, m: RegressionMetrics) -> str:
    return (
        f"{name:<20}{built_from:<32}{100 * m.within_10pct:>9.1f}%{100 * m.within_5pct:>8.1f}%"
        f"{m.rmse_ms:>9.4f}{100 * m.mape:>7.2f}%{m.spearman:>8.3f}{m.kendall:>8.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--train", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--remeasure", type=int, default=50, help="test archs measured twice")
    parser.add_argument("--data-dir", type=Path, help="keep (and reuse) the server's data here")
    args = parser.parse_args()
    if not 2 <= args.train < args.n:
        raise SystemExit("--train must be at least 2 and less than --n")
    if not 0 <= args.remeasure <= args.n - args.train:
        raise SystemExit("--remeasure must be between 0 and the number of test archs")

    name = f"lut-bench-nb201-{args.n}-seed{args.seed}"
    root = args.data_dir or Path(tempfile.mkdtemp(prefix="latlab-lut-bench-"))
    with measured_sample(root, name, args.n, args.seed, CONFIG, timeout_s=24 * 3600) as (
        client,
        device,
        datasets,
    ):
        dataset = datasets[GraphForm.pruned]
        archs = measured_archs(client, dataset.id)
        train, test = archs[: args.train], archs[args.train :]
        train_ids = [model_id for _, model_id, _ in train]
        true_ms = [ms for _, _, ms in test]
        results = [
            lut_result(client, device.id, source, config, train_ids, test, true_ms)
            for source, config in (
                (LutSource.measured_ops, CONFIG),
                (LutSource.micro_models, MICRO_CONFIG),
            )
        ]
        again = remeasured(client, device.id, f"{name}-again", test[len(test) - args.remeasure :])
        host = host_summary(client, dataset.id)
    space = get_space("nb201")
    macs = {arch: graph_cost(space.graph(space.parse(arch))).macs for arch, _, _ in archs}
    slope, intercept = np.polyfit([macs[a] for a, _, _ in train], [ms for _, _, ms in train], 1)
    baseline = [slope * macs[a] + intercept for a, _, _ in test]
    results.append(
        ("FLOPs-linear", f"{len(train)} archs", regression_metrics(baseline, true_ms), "")
    )

    print(
        f"\nLUT accuracy: {len(archs)} NAS-Bench-201 archs measured on {device.descriptor.cpu_model} "
        f"(onnxruntime, {CONFIG.threads} thread); predictors built from {len(train)}, "
        f"scored on the other {len(test)}.\nwithin X%: |pred - true| / true <= X (nn-Meter's convention)"
    )
    print(
        f"{'predictor':<20}{'built from':<32}{'within10':>10}{'within5':>9}{'RMSE ms':>9}"
        f"{'MAPE':>8}{'rho':>8}{'tau':>8}"
    )
    for name_, built_from, metrics, _ in results:
        print(row(name_, built_from, metrics))
    for name_, _, _, note in results:
        if note:
            print(f"  {name_}: {note}")
    if again:
        first = dict((arch, ms) for arch, _, ms in archs)
        devs = [abs(ms / first[arch] - 1) for arch, ms in again.items()]
        shares = ", ".join(
            f"{100 * sum(d <= t for d in devs) / len(devs):.0f} % within {100 * t:.0f} %"
            for t in (0.01, 0.03, 0.05, 0.10)
        )
        print(
            f"ground truth: {len(devs)} test archs measured again in reverse order: median "
            f"|difference| {100 * float(np.median(devs)):.2f} %, {shares}"
        )
    print(f"timing CPU: {host}")
    print(f"data in {root}/ (rerun with --data-dir {root} to reuse the measurements)")


def remeasured(
    client: Client, device_id: str, name: str, archs: list[tuple[str, str, float]]
) -> dict[str, float]:
    """The archs measured again, in reverse order, as a second campaign: arch -> median."""
    if not archs:
        return {}
    found = {d.name: d for d in client.datasets()}
    dataset = found.get(name) or client.create_dataset(
        DatasetCreate(
            name=name,
            space="nb201",
            archs=[arch for arch, _, _ in reversed(archs)],
            device_ids=[device_id],
            config=CONFIG,
        )
    )
    follow_dataset(client, dataset.id, timeout_s=24 * 3600)
    return {arch: ms for arch, _, ms in measured_archs(client, dataset.id)}


def host_summary(client: Client, dataset_id: str) -> str:
    """What the measurements' provenance says about the timing CPU: pinned or not, and the
    share of its time that went to anything else (median and worst run)."""
    import pyarrow.parquet as pq

    with zipfile.ZipFile(io.BytesIO(client.export_dataset(dataset_id, DatasetFormat.parquet))) as z:
        rows = pq.read_table(io.BytesIO(z.read("measurements.parquet"))).to_pylist()
    hosts = [json.loads(r["provenance"]) if r["provenance"] else {} for r in rows]
    cpus = {str(h.get("host", {}).get("cpus")) for h in hosts}
    other = [h["host"]["other_busy_pct"] for h in hosts if "other_busy_pct" in h.get("host", {})]
    steal = [h["host"]["steal_pct"] for h in hosts if "steal_pct" in h.get("host", {})]
    if not other:
        return f"cpus {', '.join(sorted(cpus))} (no per-CPU accounting)"
    return (
        f"cpus {', '.join(sorted(cpus))}; time spent outside the agent: median "
        f"{float(np.median(other)):.2f} %, worst {max(other):.2f} %; steal median "
        f"{float(np.median(steal)):.2f} %, worst {max(steal):.2f} %"
    )


if __name__ == "__main__":
    main()
