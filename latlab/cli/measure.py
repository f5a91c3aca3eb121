"""Verbs for the measurement service: upload models, create and follow jobs, read results."""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from latlab.cli.common import (
    UsageError,
    add_runtime_flags,
    add_user_flags,
    client_from,
    kv,
    ms,
    runtime_config,
    table,
)
from latlab.client import Client
from latlab.quality import spread_pct
from latlab.schemas import JobState

__all__ = ["add_parsers"]


def cmd_models_upload(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        for path in args.files:
            model = client.upload_model(path)
            s = model.summary
            macs = "?" if s.macs is None else f"{s.macs / 1e6:.1f}M"
            print(f"{model.id}  {path}  nodes={s.n_nodes} params={s.params} macs={macs}")
    return 0


def cmd_jobs_create(args: argparse.Namespace) -> int:
    selector: dict[str, str | int] | None = None
    if args.selector is not None:
        selector = dict(kv(args.selector, "--selector"))
    if (args.device is None) == (selector is None):
        raise UsageError("give --device ID or --selector KEY=VALUE (--selector alone: any device)")
    with client_from(args) as client:
        job = client.create_job(
            args.model, device_id=args.device, selector=selector, config=runtime_config(args)
        )
        print(f"{job.id}  {job.state.value}{'  (deduplicated)' if job.deduplicated else ''}")
        if args.wait:
            return _wait(client, [job.id], args.timeout)
    return 0


def _wait(client: Client, job_ids: list[str], timeout_s: float) -> int:
    failed = 0
    for i, job in enumerate(client.iter_finished(job_ids, timeout_s=timeout_s), start=1):
        detail = f"  {job.error}" if job.error and job.state != JobState.done else ""
        print(f"[{i}/{len(job_ids)}] {job.id}  {job.state.value}{detail}", flush=True)
        failed += job.state != JobState.done
    return 1 if failed else 0


def cmd_jobs_wait(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        return _wait(client, args.ids, args.timeout)


def cmd_jobs_list(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        jobs = client.jobs(state=args.state, limit=args.limit)
    rows = [
        {
            "id": j.id,
            "state": j.state.value,
            "model": j.model_id[:12],
            "device": (j.claimed_by or j.device_id or "")[:12],
            "attempts": j.attempts,
            "error": (j.error or "")[:60],
        }
        for j in jobs
    ]
    print(table(rows, ["id", "state", "model", "device", "attempts", "error"]))
    return 0


def cmd_devices_list(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        devices = client.devices()
    rows = [
        {
            "id": d.id,
            "name": d.name[:40],
            "source": d.source.value,
            "online": "yes" if d.online else "no",
            "runtimes": ",".join(r.name for r in d.descriptor.runtimes),
            "last_seen": d.last_seen_at.strftime("%Y-%m-%d %H:%M:%S"),
        }
        for d in devices
    ]
    print(table(rows, ["id", "name", "source", "online", "runtimes", "last_seen"]))
    return 0


def cmd_devices_canary(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        points = client.device_canary(args.device, limit=args.limit)
    if args.json:
        print(json.dumps([p.model_dump(mode="json") for p in points], indent=2))
        return 0
    if not points:
        print(f"device {args.device} has no canary timings yet")
        return 0
    reference = statistics.median(p.median_ms for p in points)
    rows = [
        {
            "measured_at": p.measured_at.strftime("%Y-%m-%d %H:%M:%S"),
            "median_ms": f"{p.median_ms:.3f}",
            "vs_median": f"{100 * (p.median_ms / reference - 1):+.1f}%",
            "ci_ms": (
                ""
                if p.ci_low_ms is None or p.ci_high_ms is None
                else f"{p.ci_low_ms:.3f}-{p.ci_high_ms:.3f}"
            ),
            "verdict": p.verdict or "",
            "runtime": f"{p.runtime} ({p.provider}, {p.threads} thr)",
        }
        for p in points
    ]
    print(table(rows, ["measured_at", "median_ms", "vs_median", "ci_ms", "verdict", "runtime"]))
    spread = spread_pct([p.median_ms for p in points])
    print(f"{len(points)} canaries, median {reference:.3f} ms, spread {spread:.1f} %")
    return 0


def cmd_devices_revoke(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        for device_id in args.ids:
            device = client.revoke_device(device_id)
            print(f"revoked {device.id} ({device.name})")
    return 0


def cmd_measurements(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        rows = client.measurements(
            model_id=args.model,
            device_id=args.device,
            job_id=args.job,
            ops=args.json,
            samples=args.json,
            limit=args.limit,
        )
    if args.json:
        print(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
        return 0
    cells = [
        {
            "id": r.id,
            "model": (r.model_id or r.source.value)[:12],
            "device": r.device_id[:12],
            "median_ms": f"{r.stats.median_ms:.3f}",
            "p10_ms": ms(r.stats.p10_ms),
            "p90_ms": ms(r.stats.p90_ms),
            "n": r.stats.n,
            "runtime": f"{r.runtime} {r.runtime_version}",
            "threads": r.threads,
        }
        for r in rows
    ]
    columns = ["id", "model", "device", "median_ms", "p10_ms", "p90_ms", "n", "runtime", "threads"]
    print(table(cells, columns))
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    m = sub.add_parser("models", help="models").add_subparsers(dest="models_cmd", required=True)
    mu = add_user_flags(m.add_parser("upload", help="upload ONNX files"))
    mu.add_argument("files", nargs="+", type=Path)
    mu.set_defaults(func=cmd_models_upload)

    j = sub.add_parser("jobs", help="timing jobs").add_subparsers(dest="jobs_cmd", required=True)
    jc = add_user_flags(j.add_parser("create", help="time a model on a device"))
    jc.add_argument("--model", required=True, help="model id (sha256)")
    jc.add_argument("--device", help="device id or name")
    jc.add_argument("--selector", nargs="*", metavar="KEY=VALUE", help="any matching device")
    add_runtime_flags(jc)
    jc.add_argument("--wait", action="store_true", help="wait for the result")
    jc.add_argument("--timeout", type=float, default=3600)
    jc.set_defaults(func=cmd_jobs_create)
    jw = add_user_flags(j.add_parser("wait", help="wait for jobs to finish"))
    jw.add_argument("ids", nargs="+")
    jw.add_argument("--timeout", type=float, default=3600)
    jw.set_defaults(func=cmd_jobs_wait)
    jl = add_user_flags(j.add_parser("list", help="list jobs"))
    jl.add_argument("--state", choices=[s.value for s in JobState])
    jl.add_argument("--limit", type=int, default=50)
    jl.set_defaults(func=cmd_jobs_list)

    dv = sub.add_parser("devices", help="registered devices").add_subparsers(
        dest="devices_cmd", required=True
    )
    add_user_flags(dv.add_parser("list", help="list devices")).set_defaults(func=cmd_devices_list)
    dc = add_user_flags(dv.add_parser("canary", help="the device's canary series"))
    dc.add_argument("device", help="device id or name")
    dc.add_argument("--limit", type=int, default=50, help="the latest N points")
    dc.add_argument("--json", action="store_true")
    dc.set_defaults(func=cmd_devices_canary)
    dr = add_user_flags(dv.add_parser("revoke", help="revoke device tokens"))
    dr.add_argument("ids", nargs="+", help="device ids or names")
    dr.set_defaults(func=cmd_devices_revoke)

    me = add_user_flags(sub.add_parser("measurements", help="query measurements"))
    me.add_argument("--model")
    me.add_argument("--device", help="device id or name")
    me.add_argument("--job")
    me.add_argument("--limit", type=int, default=100)
    me.add_argument("--json", action="store_true", help="full rows: samples and per-op times")
    me.set_defaults(func=cmd_measurements)
