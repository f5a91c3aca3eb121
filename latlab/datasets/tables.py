"""CSV for a quick look; Parquet tables with a datasheet README for publishing."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import statistics
from collections import Counter
from typing import Any

from latlab.datasets.dump import (
    CANARY_FIELDS,
    INDEX_NOTE,
    QUALITY_FIELDS,
    STAT_FIELDS,
    DatasetDump,
)
from latlab.quality import spread_pct

__all__ = ["CSV_COLUMNS", "datasheet", "write_csv", "write_parquet"]

CSV_COLUMNS = (
    "space",
    "arch",
    "arch_index",
    "device",
    "device_id",
    "latency_ms",
    "runtime",
    "source",
    "n",
    "p10_ms",
    "p90_ms",
    "verdict",
    "ci_low_ms",
    "ci_high_ms",
    "canary",
    "canary_drift_pct",
    "canary_scale",
    "adjusted_ms",
)


def write_csv(dump: DatasetDump) -> dict[str, bytes]:
    index = {a.arch: a.arch_index for a in dump.archs}
    names = {d.id: d.name for d in dump.devices}
    out = io.StringIO()
    writer = csv.writer(out)  # RFC 4180: \r\n, so a \r or \n inside a name is quoted
    writer.writerow(CSV_COLUMNS)
    for m in dump.measurements:
        writer.writerow(
            [
                dump.space,
                m.arch,
                index[m.arch],
                names[m.device_id],
                m.device_id,
                repr(m.latency_ms),
                m.runtime,
                m.source,
                m.n,
                _opt(m.stats.get("p10_ms")),
                _opt(m.stats.get("p90_ms")),
                m.quality.get("verdict") or "",
                _opt(m.quality.get("ci_low_ms")),
                _opt(m.quality.get("ci_high_ms")),
                m.canary.get("canary") or "",
                _opt(m.canary.get("canary_drift_pct")),
                _opt(m.canary.get("canary_scale")),
                _opt(m.canary.get("adjusted_ms")),
            ]
        )
    return {"measurements.csv": out.getvalue().encode()}


def _opt(value: float | None) -> str:
    return "" if value is None else repr(value)


FORM_NOTE = {
    "pruned": "ops whose result cannot reach a cell's output were not in the network",
    "eager": "every op of the arch was computed, dead or not, as a framework's eager code runs it",
}


def datasheet(dump: DatasetDump) -> str:
    sources = Counter(m.source for m in dump.measurements)
    runtimes = sorted(
        {
            f"{m.runtime} {m.runtime_version} ({m.provider}, {m.threads} thread(s))"
            for m in dump.measurements
        }
    )
    lines = [
        f"# {dump.name}",
        "",
        f"Latency dataset exported by latlab: space `{dump.space}` {json.dumps(dump.space_params)}, "
        f"{len(dump.archs)} architectures, {len(dump.devices)} devices, {len(dump.measurements)} measurements "
        f"({', '.join(f'{n} {s}' for s, n in sorted(sources.items()))}).",
        "",
        f"- Graph form measured: `{dump.form or 'unknown'}` ({FORM_NOTE.get(dump.form or '', 'the source did not say')}).",
        f"- `arch_index`: {INDEX_NOTE.get(dump.space, 'the space index')}.",
        "",
        "## Units and protocol",
        "",
        "- `latency_ms` / `median_ms`: milliseconds, float64; the median of the timed runs (the headline).",
        "- `samples_ms`: every timed run, in order; warm-up runs are not included.",
        "- `dur_us` (op_measurements): microseconds; median kernel time over the profiled runs, taken in a",
        "  separate profiled session; `source_nodes` are the exported graph's nodes the kernel computes.",
        "- Imported rows (`source = imported`) carry only the published figure; see `provenance`.",
        "- `verdict`: how far to trust the median (latlab.quality): `ok`, `noisy` (95 % interval",
        "  half-width over 2 %), `drifting` (last third's median over 3 % from the first's), `interfered`",
        "  (other work or steal on the timing CPU), `throttled` (thermal limit, clock under 85 % of max),",
        "  `unknown` (too few samples); `ci_low_ms`/`ci_high_ms`: the median's 95 % interval.",
        "- `canary` (`ok`/`drifted`), `canary_drift_pct`: the device canary (a reference model timed",
        "  between the jobs) just before or after the row, against the campaign's canary median;",
        "  `canary_scale`: the device's speed then (the canary interpolated in time / that median);",
        "  `adjusted_ms` = median / `canary_scale`, the latency at the campaign's reference speed.",
        "",
        "## Quality",
        "",
        *_quality_lines(dump),
        *_canary_lines(dump),
    ]
    if dump.config:
        lines += [
            "",
            "Runtime config of the campaign:",
            "",
            "```json",
            json.dumps(dump.config, indent=2),
            "```",
        ]
    if dump.provenance:
        lines += ["", "Provenance:", "", "```json", json.dumps(dump.provenance, indent=2), "```"]
    lines += ["", "## Runtimes", ""] + [f"- {r}" for r in runtimes]
    lines += ["", "## Devices", ""]
    for d in dump.devices:
        desc = d.descriptor
        lines.append(
            f"- **{d.name}** (`{d.id}`): {desc.get('cpu_model', '?')}, {desc.get('cpu_cores', '?')} cores, "
            f"{desc.get('os', '?')}, GPU {desc.get('gpu') or 'none'}"
        )
    lines += [
        "",
        "## Files",
        "",
        "- `archs.parquet`: position, arch (the space's string form), arch_index, vector, model_id (sha256)",
        "- `devices.parquet`: id, name, descriptor (JSON)",
        "- `measurements.parquet`: one row per arch x device with statistics, samples and provenance",
        "- `op_measurements.parquet`: per-kernel rows of the measurements that were profiled",
        "- `canaries.parquet`: the device canary's timings that bound the measurements",
        "",
        "## Licence",
        "",
        "Measurements made with latlab are released under CC BY 4.0 by whoever ran the campaign;",
        "imported rows keep the licence of their source (see provenance).",
        "",
    ]
    return "\n".join(lines)


def _quality_lines(dump: DatasetDump) -> list[str]:
    measured = [m for m in dump.measurements if m.quality.get("verdict")]
    if not measured:
        return ["No measurement of this dataset was assessed (imported figures only)."]
    verdicts = Counter(m.quality["verdict"] for m in measured)
    widths = sorted(
        m.quality["ci_halfwidth_pct"]
        for m in measured
        if m.quality.get("ci_halfwidth_pct") is not None
    )
    lines = [
        f"{verdicts.get('ok', 0) / len(measured):.1%} of {len(measured)} assessed measurements are "
        "`ok` ("
        + ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items(), key=lambda x: -x[1]))
        + ")."
    ]
    if widths:
        lines.append(
            f"Median half-width of the 95 % interval: {widths[len(widths) // 2]:.2f} % "
            f"(90th percentile {widths[int(0.9 * (len(widths) - 1))]:.2f} %)."
        )
    return lines


def _canary_lines(dump: DatasetDump) -> list[str]:
    """Per device: the canary's spread over the campaign and the rows it marks drifted."""
    if dump.canary_limit_pct is None:
        return []
    if not dump.canaries:
        return ["", "No device canary bounds these measurements (the server's canary was off)."]
    names = {d.id: d.name for d in dump.devices}
    lines = [
        "",
        f"Device canary (a reference model timed between the jobs; a row is `drifted` when the "
        f"canary before or after it differs from the campaign's canary median by over "
        f"{dump.canary_limit_pct:g} %):",
        "",
    ]
    for device_id in dict.fromkeys(c.device_id for c in dump.canaries):
        ms = sorted(c.median_ms for c in dump.canaries if c.device_id == device_id)
        mid = statistics.median(ms)
        rows = [m for m in dump.measurements if m.device_id == device_id and m.canary]
        drifted = sum(m.canary["canary"] == "drifted" for m in rows)
        lines.append(
            f"- {names.get(device_id, device_id)}: {len(ms)} canaries, median {mid:.4g} ms, "
            f"spread {spread_pct(ms):.1f} % (min {ms[0]:.4g}, max {ms[-1]:.4g} ms); "
            f"{drifted} of {len(rows)} rows drifted."
        )
    return lines


def write_parquet(dump: DatasetDump) -> dict[str, bytes]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    def table_bytes(rows: list[dict[str, Any]], schema: Any) -> bytes:
        sink = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), sink)
        return sink.getvalue()

    archs = [
        {
            "position": a.position,
            "arch": a.arch,
            "arch_index": a.arch_index,
            "vector": list(a.vector) if a.vector is not None else None,
            "model_id": a.model_id,
        }
        for a in dump.archs
    ]
    devices = [
        {"id": d.id, "name": d.name, "descriptor": json.dumps(d.descriptor)} for d in dump.devices
    ]
    measurements = [
        {
            "measurement_id": m.measurement_id,
            "arch": m.arch,
            "device_id": m.device_id,
            "source": m.source,
            "median_ms": m.latency_ms,
            "n": m.n,
            **{k: m.stats.get(k) for k in STAT_FIELDS},
            **{k: m.quality.get(k) for k in QUALITY_FIELDS},
            **{k: m.canary.get(k) for k in CANARY_FIELDS},
            "samples_ms": m.samples_ms,
            "runtime": m.runtime,
            "runtime_version": m.runtime_version,
            "provider": m.provider,
            "threads": m.threads,
            "protocol_version": m.protocol_version,
            "agent_version": m.agent_version,
            "created_at": m.created_at,
            "provenance": json.dumps(m.provenance) if m.provenance is not None else None,
        }
        for m in dump.measurements
    ]
    ops = [
        {
            "measurement_id": o.measurement_id,
            "seq": o.seq,
            "node_name": o.node_name,
            "op_type": o.op_type,
            "provider": o.provider,
            "dur_us": o.dur_us,
            "n": o.n,
            "source_nodes": o.source_nodes,
        }
        for o in dump.ops
    ]
    f64, i64, s = pa.float64(), pa.int64(), pa.string()
    schemas = {
        "archs": pa.schema(
            [
                ("position", i64),
                ("arch", s),
                ("arch_index", s),
                ("vector", pa.list_(i64)),
                ("model_id", s),
            ]
        ),
        "devices": pa.schema([("id", s), ("name", s), ("descriptor", s)]),
        "measurements": pa.schema(
            [
                ("measurement_id", i64),
                ("arch", s),
                ("device_id", s),
                ("source", s),
                ("median_ms", f64),
                ("n", i64),
            ]
            + [(k, f64) for k in STAT_FIELDS]
            + [(k, s if k == "verdict" else f64) for k in QUALITY_FIELDS]
            + [(k, s if k == "canary" else f64) for k in CANARY_FIELDS]
            + [
                ("samples_ms", pa.list_(f64)),
                ("runtime", s),
                ("runtime_version", s),
                ("provider", s),
                ("threads", i64),
                ("protocol_version", s),
                ("agent_version", s),
                ("created_at", s),
                ("provenance", s),  # JSON
            ]
        ),
        "canaries": pa.schema(
            [
                ("device_id", s),
                ("measured_at", s),
                ("median_ms", f64),
                ("ci_low_ms", f64),
                ("ci_high_ms", f64),
                ("verdict", s),
            ]
        ),
        "op_measurements": pa.schema(
            [
                ("measurement_id", i64),
                ("seq", i64),
                ("node_name", s),
                ("op_type", s),
                ("provider", s),
                ("dur_us", f64),
                ("n", i64),
                ("source_nodes", pa.list_(s)),
            ]
        ),
    }
    return {
        "archs.parquet": table_bytes(archs, schemas["archs"]),
        "devices.parquet": table_bytes(devices, schemas["devices"]),
        "measurements.parquet": table_bytes(measurements, schemas["measurements"]),
        "op_measurements.parquet": table_bytes(ops, schemas["op_measurements"]),
        "canaries.parquet": table_bytes(
            [dataclasses.asdict(c) for c in dump.canaries], schemas["canaries"]
        ),
        "README.md": datasheet(dump).encode(),
    }
