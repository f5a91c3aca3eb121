"""``latlab quickstart``: the whole loop on this machine, end to end, on real measurements.

An embedded server on SQLite and a local CPU agent (``latlab.lab.local``: the agent in a process
of its own, timing on a CPU of its own); a campaign of NAS-Bench-201 archs
exported to ONNX, timed with the measurement protocol and profiled per op; the dataset
exported as LatBench pickles, Parquet tables and CSV; LUTs built from half of the archs (from
their per-op rows, and from micro-models timed on the agent) and a GCN trained on the same
half, all checked on the other half next to a FLOPs-only baseline.
"""

from __future__ import annotations

import io
import json
import secrets
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
from pydantic import SecretStr

from latlab.client import Client
from latlab.lab.local import local_lab
from latlab.latency_model import to_artifact
from latlab.metrics import RegressionMetrics, regression_metrics, spearman
from latlab.opkey import graph_cost
from latlab.progress import elapsed, follow_dataset, follow_lut
from latlab.quality import spread_pct
from latlab.runtimes import Protocol, RuntimeConfig, runtimes
from latlab.runtimes.onnxruntime import OnnxRuntimeConfig
from latlab.schemas import (
    DatasetCreate,
    DatasetFormat,
    DatasetOut,
    LutCreate,
    LutSource,
    LutState,
    TransferFitIn,
    TransferPlanIn,
)
from latlab.server.config import Settings
from latlab.spaces import GraphForm, get_space

__all__ = ["DEFAULT_ARCHS", "QuickstartResult", "run_quickstart"]

#: Sized so the whole quickstart stays within a few minutes on a 2-core machine (about 3.5 s
#: per arch with the protocol's defaults).
DEFAULT_ARCHS = 40
#: Fewer leave too few held-out archs to score on once the training half covers every kernel
#: type (checked for every size from 8 to 120: at least 3 held out).
MIN_ARCHS = 8
SPACE = "nb201"
#: Local measurements the transfer predictor gets (of the training half).
TRANSFER_SAMPLES = 10
#: Published latencies of 13 devices (BRP-NAS / Eagle, Apache-2.0), where a checkout of this
#: repository has them beside it (../shared); ``latlab quickstart --latbench DIR`` elsewhere.
LATBENCH_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "latbench"
#: Rows of the summary table: the fastest and the slowest archs.
SHOWN = 5
#: Micro-models are single kernels of microseconds: a shorter protocol is plenty (seconds).
MICRO_WARMUP_S, MICRO_TIMED_S = 0.2, 0.5


@dataclass(frozen=True)
class ArchResult:
    index: int
    arch: str
    model_id: str
    macs: int
    median_ms: float
    p10_ms: float
    p90_ms: float
    n: int
    ops_sum_ms: float
    #: How far to trust the median (latlab.quality).
    verdict: str
    ci_halfwidth_pct: float | None


@dataclass(frozen=True)
class Accuracy:
    predictor: str
    built_from: str
    metrics: RegressionMetrics


@dataclass(frozen=True)
class QuickstartResult:
    dataset: DatasetOut
    archs: list[ArchResult]
    exports: dict[DatasetFormat, Path]
    accuracy: list[Accuracy]


def run_quickstart(
    root: Path,
    out: TextIO,
    config: RuntimeConfig | None = None,
    n_archs: int = DEFAULT_ARCHS,
    seed: int = 0,
    latbench: Path | None = LATBENCH_DIR,
) -> QuickstartResult:
    """Run the loop in ``root`` (wiped first); print progress and the results to ``out``."""
    if n_archs < MIN_ARCHS:
        raise ValueError(f"the quickstart needs at least {MIN_ARCHS} archs, got {n_archs}")
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    api_key, enroll_key = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    # the format `latlab server` reads, so LATLAB_DATA_DIR=<root> latlab server serves this data
    (root / "credentials.json").write_text(
        json.dumps({"api_key": api_key, "enroll_key": enroll_key}, indent=2)
    )
    (root / "credentials.json").chmod(0o600)
    settings = Settings(
        data_dir=root,
        api_keys=[SecretStr(api_key)],
        enroll_key=SecretStr(enroll_key),
        reap_every_s=1.0,
    )
    config = config or OnnxRuntimeConfig()
    t0 = time.monotonic()
    with local_lab(settings, agent_env={"LATLAB_AGENT_CLAIM_WAIT_S": "1"}) as lab:
        client, device, timing_cpus = lab.client, lab.device, lab.timing_cpus
        print(f"server   {lab.url}  (SQLite {settings.resolved_database_url})", file=out)
        d = device.descriptor
        where = f"timing on CPU {timing_cpus}" if timing_cpus else "not pinned: one CPU"
        print(f"agent    {device.name} ({d.cpu_model}, {d.cpu_cores} cores; {where})", file=out)
        dataset = _measure(client, device.id, config, n_archs, seed, out)
        exports = _export(client, dataset, root / "exports", out)
        archs = _results(exports[DatasetFormat.parquet])
        accuracy = _predictor_accuracy(client, device.id, config, archs, latbench, out)
    print(_render(archs), file=out)
    print(_render_canary(exports[DatasetFormat.parquet], dataset), file=out)
    print(_render_accuracy(accuracy, len(archs)), file=out)
    print(
        f"\n{len(archs)} {SPACE} archs measured in {time.monotonic() - t0:.1f} s; data in {root}/",
        file=out,
    )
    print(
        f"browse it: LATLAB_DATA_DIR={root} latlab server, then (the key is found in "
        f"{root}/credentials.json) LATLAB_DATA_DIR={root} latlab dataset status",
        file=out,
    )
    return QuickstartResult(dataset=dataset, archs=archs, exports=exports, accuracy=accuracy)


def _measure(
    client: Client, device_id: str, config: RuntimeConfig, n_archs: int, seed: int, out: TextIO
) -> DatasetOut:
    created = client.create_dataset(
        DatasetCreate(
            name=f"quickstart-{SPACE}",
            space=SPACE,
            n=n_archs,
            seed=seed,
            device_ids=[device_id],
            config=config,
        )
    )
    if config.protocol == Protocol.adaptive:
        how = (
            f"the adaptive protocol (warm-up until the median settles, up to "
            f"{config.warmup_max_s} s; timed runs until its 95 % interval is within "
            f"±{config.target_ci_pct} %, {config.timed_s}-{config.timed_max_s} s)"
        )
    else:
        how = (
            f"warm-up {config.warmup_runs} runs/{config.warmup_s} s, "
            f"timed {config.timed_runs} runs/{config.timed_s} s"
        )
    print(
        f"dataset  {created.id}: {n_archs} {SPACE} archs (seed {seed}) exported to ONNX and "
        f"queued; each timed with {how}, {config.threads} thread, then profiled per op",
        file=out,
        flush=True,
    )
    done = follow_dataset(client, created.id, timeout_s=3600, file=out)
    if done.progress.failed:
        raise RuntimeError(f"{done.progress.failed} measurements failed; see `latlab jobs list`")
    return done


def _export(
    client: Client, dataset: DatasetOut, folder: Path, out: TextIO
) -> dict[DatasetFormat, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for fmt in (DatasetFormat.latbench, DatasetFormat.parquet, DatasetFormat.csv):
        path = (
            folder / f"{dataset.name}-{fmt.value}{'.csv' if fmt == DatasetFormat.csv else '.zip'}"
        )
        path.write_bytes(client.export_dataset(dataset.id, fmt))
        paths[fmt] = path
    print(f"exports  {', '.join(str(p) for p in paths.values())}", file=out)
    return paths


def _results(parquet_zip: Path) -> list[ArchResult]:
    """Per arch: the headline statistics and the sum of its per-op kernel times, read back
    from the Parquet export (what a user of the dataset would read)."""
    import zipfile

    import pyarrow.parquet as pq

    with zipfile.ZipFile(parquet_zip) as archive:
        measurements = pq.read_table(io.BytesIO(archive.read("measurements.parquet"))).to_pylist()
        models = pq.read_table(io.BytesIO(archive.read("archs.parquet"))).to_pylist()
        ops = pq.read_table(io.BytesIO(archive.read("op_measurements.parquet"))).to_pylist()
    ops_us: dict[int, float] = {}
    for op in ops:
        ops_us[op["measurement_id"]] = ops_us.get(op["measurement_id"], 0.0) + op["dur_us"]
    model_of = {a["arch"]: a["model_id"] for a in models}
    space = get_space(SPACE)
    results = []
    for m in measurements:
        arch = space.parse(m["arch"])
        results.append(
            ArchResult(
                index=arch.index,
                arch=m["arch"],
                model_id=model_of[m["arch"]],
                macs=graph_cost(space.graph(arch)).macs,
                median_ms=m["median_ms"],
                p10_ms=m["p10_ms"],
                p90_ms=m["p90_ms"],
                n=m["n"],
                ops_sum_ms=ops_us.get(m["measurement_id"], 0.0) / 1e3,
                verdict=m["verdict"] or "unknown",
                ci_halfwidth_pct=m["ci_halfwidth_pct"],
            )
        )
    return sorted(results, key=lambda r: r.median_ms)


def _render(archs: list[ArchResult]) -> str:
    header = (
        f"\n{'index':>6}{'MMACs':>9}{'median_ms':>11}{'±CI %':>7}{'p10_ms':>9}{'p90_ms':>9}"
        f"{'n':>7}{'ops_sum_ms':>12}  {'verdict':<11}arch"
    )
    shown = archs if len(archs) <= 2 * SHOWN else archs[:SHOWN] + archs[-SHOWN:]
    lines = [header]
    for i, r in enumerate(shown):
        if i == SHOWN and len(archs) > 2 * SHOWN:
            lines.append(f"{'...':>6}")
        ci = "" if r.ci_halfwidth_pct is None else f"{r.ci_halfwidth_pct:.2f}"
        lines.append(
            f"{r.index:>6}{r.macs / 1e6:>9.1f}{r.median_ms:>11.3f}{ci:>7}{r.p10_ms:>9.3f}"
            f"{r.p90_ms:>9.3f}{r.n:>7}{r.ops_sum_ms:>12.3f}  {r.verdict:<11}{r.arch}"
        )
    rho = spearman([r.macs for r in archs], [r.median_ms for r in archs])
    verdicts = Counter(r.verdict for r in archs)
    lines.append(
        f"\nlatency {archs[0].median_ms:.3f}..{archs[-1].median_ms:.3f} ms; "
        f"Spearman rho(MACs, latency) = {rho:.3f}\n"
        f"verdicts: {', '.join(f'{v} {n}' for v, n in verdicts.most_common())}"
    )
    return "\n".join(lines)


def _render_canary(parquet_zip: Path, dataset: DatasetOut) -> str:
    """The device canary during the campaign: its spread and the rows it judged."""
    import zipfile

    import pyarrow.parquet as pq

    with zipfile.ZipFile(parquet_zip) as archive:
        canaries = pq.read_table(io.BytesIO(archive.read("canaries.parquet"))).to_pylist()
        rows = pq.read_table(io.BytesIO(archive.read("measurements.parquet"))).to_pylist()
    if not canaries:
        return "canary: none timed (the server's canary is off)"
    ms = [c["median_ms"] for c in canaries]
    judged = Counter(r["canary"] for r in rows if r["canary"])
    return (
        f"canary: {len(ms)} timings of the reference model between the jobs, "
        f"{min(ms):.3f}..{max(ms):.3f} ms (spread {spread_pct(ms):.1f} %); "
        f"rows {', '.join(f'{v} {n}' for v, n in judged.most_common())}; "
        f"re-measured {dataset.progress.remeasured}"
    )


def _predictor_accuracy(
    client: Client,
    device_id: str,
    config: RuntimeConfig,
    archs: list[ArchResult],
    latbench: Path | None,
    out: TextIO,
) -> list[Accuracy]:
    """LUTs and a GCN from every other arch (by index), checked on the rest, beside a
    FLOPs-only line."""
    by_index = sorted(archs, key=lambda r: r.index)
    train, test = covering_split(by_index, config.runtime)
    train_ids = [r.model_id for r in train]
    true_ms = [r.median_ms for r in test]
    micro_config = config.model_copy(
        update={
            "warmup_s": min(config.warmup_s, MICRO_WARMUP_S),
            "timed_s": min(config.timed_s, MICRO_TIMED_S),
        }
    )
    print(
        f"luts     from {len(train)} archs: their per-op rows, and one micro-model per kernel "
        f"timed on the agent (warm-up {micro_config.warmup_s} s, timed {micro_config.timed_s} s)",
        file=out,
        flush=True,
    )
    results = []
    for source, lut_config in (
        (LutSource.measured_ops, config),
        (LutSource.micro_models, micro_config),
    ):
        lut = client.create_lut(
            LutCreate(device_id=device_id, source=source, config=lut_config, model_ids=train_ids)
        )
        lut = follow_lut(client, lut.id, timeout_s=3600, file=out)
        if lut.state != LutState.ready:
            raise RuntimeError(f"LUT {lut.id} {lut.state.value}: {lut.error}")
        predicted = client.predict(device_id, model_ids=[r.model_id for r in test], version=lut.id)
        results.append(
            Accuracy(
                f"LUT {source.value}",
                f"{lut.entries} kernels of {len(train)} archs",
                regression_metrics([p.latency_ms for p in predicted.predictions], true_ms),
            )
        )
    results.append(_gcn_accuracy(client, device_id, by_index, train, test, out))
    files = sorted(latbench.glob("*.pickle")) if latbench is not None and latbench.is_dir() else []
    if files:
        results.append(_transfer_accuracy(client, device_id, files, train, test, out))
    else:
        print(
            f"transfer skipped: no LatBench .pickle files in {latbench} (latlab quickstart "
            "--latbench DIR: the 13 published files of BRP-NAS)",
            file=out,
        )
    slope, intercept = np.polyfit([r.macs for r in train], [r.median_ms for r in train], 1)
    baseline = [slope * r.macs + intercept for r in test]
    results.append(
        Accuracy("FLOPs-linear", f"{len(train)} archs", regression_metrics(baseline, true_ms))
    )
    return results


def covering_split(
    archs: list[ArchResult], runtime: str
) -> tuple[list[ArchResult], list[ArchResult]]:
    """Every other arch to train on, the rest held out; a held-out arch with a kernel type
    that no training arch has (a LUT could not price it: no entry, no fallback) moves to the
    training half. Both halves stay in index order."""
    from latlab.lut.fusion import fuse

    rules = runtimes()[runtime].fusion
    space = get_space(SPACE)

    def kernel_types(r: ArchResult) -> set[str]:
        if rules is None:
            return set()
        kernels = fuse(space.graph(space.parse(r.arch)), rules)
        return {k.op_type for k in kernels if k.costs_time}

    train, test = archs[0::2], []
    covered = set().union(*(kernel_types(r) for r in train))
    for r in archs[1::2]:
        types = kernel_types(r)
        if types <= covered:
            test.append(r)
        else:
            train.append(r)
            covered |= types
    return sorted(train, key=lambda r: r.index), test


def _gcn_accuracy(
    client: Client,
    device_id: str,
    archs: list[ArchResult],
    train: list[ArchResult],
    test: list[ArchResult],
    out: TextIO,
) -> Accuracy:
    """A predictor (the ``latlab`` preset: GCN members over cross-validation folds, the floor
    guard) trained on the LUTs' training archs, registered, and asked through /v1/predict
    about the held-out ones."""
    from latlab.predictors.features import arch_features
    from latlab.predictors.presets import PRESETS
    from latlab.predictors.train import train_predictor

    position = {r.arch: i for i, r in enumerate(archs)}
    config = PRESETS["latlab"]
    print(f"gcn      training on {len(train)} archs ({config.folds} folds)", file=out, flush=True)
    features = arch_features(SPACE, {}, [r.arch for r in archs])
    predictor, report = train_predictor(
        features,
        [r.median_ms for r in archs],
        config,
        test=[position[r.arch] for r in test],
    )
    print(f"gcn      serves {report.served} (best on cross-validation)", file=out, flush=True)
    registered = client.upload_predictor(
        to_artifact(predictor),
        device_id=device_id,
        runtime="onnxruntime",
        space=SPACE,
        training={"quickstart": True},
    )
    return _held_out_accuracy(
        client,
        device_id,
        registered.id,
        test,
        "GCN (latlab preset)",
        f"{len(train)} archs, {len(predictor.members)} members",
    )


def _transfer_accuracy(
    client: Client,
    device_id: str,
    files: list[Path],
    train: list[ArchResult],
    test: list[ArchResult],
    out: TextIO,
) -> Accuracy:
    """A transfer predictor from the published devices' latencies and ``TRANSFER_SAMPLES`` of
    the training archs (chosen by the plan), asked through /v1/predict about the held-out ones."""
    print(f"transfer importing {len(files)} LatBench devices as sources", file=out, flush=True)
    with elapsed("import", file=out):
        client.import_dataset(files, "latbench", note="BRP-NAS / Eagle, Apache-2.0")
    plan = client.plan_transfer(
        TransferPlanIn(
            device_id=device_id,
            space=SPACE,
            form=GraphForm.pruned,
            samples=min(TRANSFER_SAMPLES, len(train)),
            candidates=[r.arch for r in train],
        )
    )
    predictor = client.fit_transfer(
        TransferFitIn(
            device_id=device_id,
            space=SPACE,
            form=GraphForm.pruned,
            archs=list(plan.archs),
            current=False,
        )
    )
    print(
        f"transfer {len(plan.archs)} local archs + {len(plan.sources)} devices: serves "
        f"{predictor.metrics.get('served')}",
        file=out,
        flush=True,
    )
    return _held_out_accuracy(
        client,
        device_id,
        predictor.id,
        test,
        "transfer (LatBench)",
        f"{len(plan.archs)} archs + {len(plan.sources)} devices",
    )


def _held_out_accuracy(
    client: Client,
    device_id: str,
    version: str,
    test: list[ArchResult],
    name: str,
    built_from: str,
) -> Accuracy:
    """A registered predictor asked through /v1/predict about the held-out archs."""
    answer = client.predict(device_id, space=SPACE, archs=[r.arch for r in test], version=version)
    return Accuracy(
        name,
        built_from,
        regression_metrics([p.latency_ms for p in answer.predictions], [r.median_ms for r in test]),
    )


def _render_accuracy(results: list[Accuracy], n_archs: int) -> str:
    n_test = results[0].metrics.n if results else 0
    lines = [
        f"\nlatency predictors on the {n_test} held-out archs of {n_archs} "
        "(within 10%: |pred - true| / true <= 0.10, nn-Meter's convention)",
        f"{'predictor':<22}{'built from':<28}{'within 10%':>11}{'MAPE':>8}{'RMSE ms':>9}{'Spearman':>10}",
    ]
    for r in results:
        m = r.metrics
        lines.append(
            f"{r.predictor:<22}{r.built_from:<28}{100 * m.within_10pct:>10.0f}%"
            f"{100 * m.mape:>7.1f}%{m.rmse_ms:>9.3f}{m.spearman:>10.3f}"
        )
    return "\n".join(lines)
