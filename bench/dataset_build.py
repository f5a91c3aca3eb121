"""How fast does the dataset builder measure a search space, how much of its time is spent
measuring, and how well do its numbers repeat?

A campaign of N NAS-Bench-201 archs (default 200) with the protocol's default config (or
``--protocol fixed``) on this machine's CPU: an embedded server (SQLite, or ``--database-url``)
and one agent in a process of its own (``latlab agent``, as deployed). Then, unless
``--passes 1``, the same archs again in reverse order, in a second campaign. Prints per pass:

- archs/hour: measurements finished per hour of wall time, campaign created -> last result;
- efficiency = (sum of the protocol's own run time: warm-up + timed runs) / wall time, the
  rest split into the runner's other work (session creation, re-timings' extra runs count as
  protocol time, the separate per-op profiled pass) and everything outside the runner (claim,
  download, upload, storing), per arch;
- the verdicts (latlab.quality) and the median half-width of the medians' 95 % intervals;

the device canary (a reference model timed every ``--canary-every-jobs`` jobs; 0: off): its
timings, spread, the archs re-measured because it drifted and those still drifted; and the
repeatability between the passes (each arch's final number): median |relative difference| of each arch's median,
and the share of archs within 1 % and 3 %.

    python bench/dataset_build.py [--n 200] [--seed 0] [--protocol adaptive|fixed]
        [--passes 2] [--no-profile] [--database-url URL]
        [--canary-every-jobs 25] [--canary-limit-pct 5] [--remeasure-drifted 1]
"""

from __future__ import annotations

import argparse
import io
import secrets
import statistics
import tempfile
import time
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from _lab import bench_lab

from latlab.client import Client
from latlab.progress import follow_dataset
from latlab.quality import spread_pct
from latlab.runtimes.onnxruntime import OnnxRuntimeConfig
from latlab.schemas import DatasetCreate, DatasetFormat, JobPurpose, MeasurementOut
from latlab.spaces.nb201 import Nb201


def all_measurements(client: Client, device_id: str) -> list[MeasurementOut]:
    rows: list[MeasurementOut] = []
    while True:
        page = client.measurements(device_id=device_id, samples=True, limit=1000, offset=len(rows))
        rows += page
        if len(page) < 1000:
            return rows


@dataclass
class Pass:
    wall_s: float
    #: The campaign's final measurement per arch (after any re-measure).
    rows: dict[str, MeasurementOut]
    #: Measurements a re-measure replaced, and the device canaries timed during the pass.
    superseded: list[MeasurementOut]
    canaries: list[MeasurementOut]
    remeasured: int
    drifted: int
    #: Per arch: the median divided by the canary's scale (None without a canary).
    adjusted_ms: dict[str, float | None]
    #: The canaries that bound the campaign (canaries.parquet): their median is its reference.
    reference_ms: float | None


def run_pass(
    client: Client,
    device_id: str,
    archs: list[str],
    config: OnnxRuntimeConfig,
    label: str,
    canary: dict[str, Any],
) -> Pass:
    """One campaign over ``archs`` in their order."""
    before = {m.id for m in all_measurements(client, device_id)}
    t0 = time.monotonic()
    dataset = client.create_dataset(
        DatasetCreate(
            name=label,
            space="nb201",
            archs=archs,
            device_ids=[device_id],
            config=config,
            **canary,
        )
    )
    done = follow_dataset(client, dataset.id, timeout_s=24 * 3600, poll_s=0.5)
    wall_s = time.monotonic() - t0
    with zipfile.ZipFile(io.BytesIO(client.export_dataset(dataset.id, DatasetFormat.parquet))) as z:
        table = pq.read_table(io.BytesIO(z.read("measurements.parquet"))).to_pylist()
        bounding = pq.read_table(io.BytesIO(z.read("canaries.parquet"))).to_pylist()
    new = [m for m in all_measurements(client, device_id) if m.id not in before]
    by_id = {m.id: m for m in new}
    final = {r["measurement_id"] for r in table}
    return Pass(
        wall_s=wall_s,
        rows={r["arch"]: by_id[r["measurement_id"]] for r in table},
        superseded=[m for m in new if m.purpose == JobPurpose.measure and m.id not in final],
        canaries=[m for m in new if m.purpose == JobPurpose.canary],
        remeasured=done.progress.remeasured,
        drifted=sum(r["canary"] == "drifted" for r in table),
        adjusted_ms={r["arch"]: r["adjusted_ms"] for r in table},
        reference_ms=statistics.median(c["median_ms"] for c in bounding) if bounding else None,
    )


def report_pass(label: str, p: Pass) -> None:
    rows = list(p.rows.values())
    wall_s = p.wall_s
    n = len(rows)
    protocol_s = [(m.warmup.total_ms + sum(m.samples_ms or [])) / 1e3 for m in rows]
    retimed_s = [
        sum(a["n"] * a["median_ms"] for a in (m.provenance or {}).get("retimed", [])) / 1e3
        for m in rows
    ]
    runner_s = [m.timing_wall_s for m in rows]
    extra_s = sum(m.timing_wall_s for m in p.canaries + p.superseded)
    inside = sum(protocol_s) + sum(retimed_s)
    print(
        f"\n{label}: {n} archs, {sum(1 for m in rows if (m.provenance or {}).get('retimed'))} re-timed"
    )
    print(f"wall time          {wall_s:9.1f} s   ({wall_s / n:.3f} s per arch)")
    print(f"archs/hour         {n / wall_s * 3600:9.0f}")
    print(
        f"protocol run time  {inside:9.1f} s   ({inside / n:.3f} s per arch, re-timings included)"
    )
    print(
        f"runner, other      {sum(runner_s) - inside:9.1f} s   "
        f"({(sum(runner_s) - inside) / n:.3f} s per arch: session creation, profiled pass)"
    )
    print(
        f"canary, re-measure {extra_s:9.1f} s   ({len(p.canaries)} canaries, "
        f"{len(p.superseded)} measurements replaced by a re-measure)"
    )
    print(
        f"outside runner     {wall_s - sum(runner_s) - extra_s:9.1f} s   "
        f"({(wall_s - sum(runner_s) - extra_s) / n:.3f} s per arch: claim, download, upload, store)"
    )
    print(f"efficiency         {inside / wall_s:9.3f}")
    verdicts = Counter(m.quality.verdict for m in rows)
    widths = sorted(m.quality.ci_halfwidth_pct or 0.0 for m in rows)
    print(
        "verdicts           "
        + ", ".join(f"{v} {c}" for v, c in verdicts.most_common())
        + f"; median CI half-width {widths[n // 2]:.2f} %"
    )
    if p.canaries:
        ms = [m.stats.median_ms for m in p.canaries]
        print(
            f"canary             {len(ms)} timings, {min(ms):.3f}..{max(ms):.3f} ms "
            f"(spread {spread_pct(ms):.1f} %); re-measured {p.remeasured}, "
            f"drifted at the end {p.drifted}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--protocol", choices=["adaptive", "fixed"], default="adaptive")
    parser.add_argument("--passes", type=int, choices=[1, 2], default=2)
    parser.add_argument("--no-profile", action="store_true", help="skip the per-op pass")
    parser.add_argument("--database-url", help="default: SQLite in a temporary directory")
    parser.add_argument(
        "--canary-every-jobs", type=int, default=25, help="the device canary; 0: off"
    )
    parser.add_argument("--canary-limit-pct", type=float, default=5.0)
    parser.add_argument("--remeasure-drifted", type=int, default=1)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="latlab-bench-"))
    api_key, enroll_key = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    config = OnnxRuntimeConfig(protocol=args.protocol, profile_ops=not args.no_profile)
    archs = [a.string for a in Nb201().sample(args.n, seed=args.seed)]
    canary = {
        "canary_limit_pct": args.canary_limit_pct,
        "remeasure_drifted": args.remeasure_drifted,
    }
    every = args.canary_every_jobs
    passes: list[Pass] = []
    with bench_lab(
        work,
        api_key,
        enroll_key,
        args.database_url,
        canary_every_jobs=every,
        canary_every_s=300 if every else 0,
    ) as (client, device, settings):
        for k in range(args.passes):
            order = archs if k == 0 else archs[::-1]
            label = f"bench-nb201-{args.n}-{k}"
            passes.append(run_pass(client, device.id, order, config, label, canary))

    print(
        f"\ndataset builder: {args.n} NAS-Bench-201 archs on {device.descriptor.cpu_model}, "
        f"1 agent process, server on {settings.resolved_database_url.split(':')[0]}"
    )
    print(
        f"config: {config.protocol.value} protocol (version {config.protocol_version}): warm-up "
        f"{config.warmup_runs} runs/{config.warmup_s} s"
        + (f" up to {config.warmup_max_s} s" if args.protocol == "adaptive" else "")
        + f", timed {config.timed_runs} runs/{config.timed_s} s"
        + (
            f" up to {config.timed_max_s} s until the median's 95 % CI is within "
            f"±{config.target_ci_pct} %, {config.retimes} re-timings"
            if args.protocol == "adaptive"
            else ""
        )
        + f", {config.threads} thread, per-op profile "
        + (f"{config.profile_runs} runs" if config.profile_ops else "off")
    )
    print(
        f"canary: every {every} jobs, limit {args.canary_limit_pct:g} %, re-measure "
        f"{args.remeasure_drifted}x"
        if every
        else "canary: off"
    )
    for k, p in enumerate(passes):
        report_pass(f"pass {k + 1}", p)
    if len(passes) == 2:
        first, second = passes[0].rows, passes[1].rows
        repeatability(
            "the medians",
            {a: m.stats.median_ms for a, m in first.items()},
            {a: m.stats.median_ms for a, m in second.items()},
        )
        if all(v is not None for p in passes for v in p.adjusted_ms.values()):
            one, two = passes[0].adjusted_ms, passes[1].adjusted_ms
            repeatability("canary-adjusted, each campaign's reference", one, two)
            # one reference speed for both: each pass's adjusted numbers times ref / common
            ref1, ref2 = passes[0].reference_ms or 1.0, passes[1].reference_ms or 1.0
            common = statistics.median([ref1, ref2])
            repeatability(
                "canary-adjusted, one reference",
                {a: (v or 0) * ref1 / common for a, v in one.items()},
                {a: (v or 0) * ref2 / common for a, v in two.items()},
            )


def repeatability(
    label: str, first: dict[str, float | None], second: dict[str, float | None]
) -> None:
    diffs = sorted(abs((second[a] or 0) - (first[a] or 0)) / (first[a] or 1) for a in first)
    print(
        f"\nrepeatability, {label} (pass 2 in reverse order): median |relative difference| "
        f"{100 * diffs[len(diffs) // 2]:.2f} %, within 1 %: "
        f"{sum(d <= 0.01 for d in diffs) / len(diffs):.1%}, within 3 %: "
        f"{sum(d <= 0.03 for d in diffs) / len(diffs):.1%}"
    )


if __name__ == "__main__":
    main()
