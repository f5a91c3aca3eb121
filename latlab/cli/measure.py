"""Verbs for the measurement service: upload models, create and follow jobs, read results."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from tqdm import tqdm

from latlab.cli.common import (
    TRANSFER_TIMEOUT_S,
    UsageError,
    add_delete_flags,
    add_json_flag,
    add_runtime_flags,
    add_timeout_flag,
    add_user_flags,
    client_from,
    confirm,
    following,
    full_id,
    full_ids,
    kv,
    ms,
    print_json,
    runtime_config,
    say_deleted,
    say_page,
    table,
)
from latlab.client import Client
from latlab.errors import ApiError
from latlab.quality import spread_pct
from latlab.schemas import JobState, MeasurementOut, ModelOut

__all__ = ["add_parsers"]

#: One file smaller than this uploads in a blink: no bar.
BAR_FROM_BYTES = 20_000_000


def _macs(model: ModelOut) -> str:
    return "?" if model.summary.macs is None else f"{model.summary.macs / 1e6:.1f}M"


def cmd_models_upload(args: argparse.Namespace) -> int:
    missing = [str(p) for p in args.files if not p.is_file()]
    if missing:
        raise UsageError(f"no such file: {', '.join(missing)}")
    sizes = [p.stat().st_size for p in args.files]
    with (
        client_from(args, timeout_s=TRANSFER_TIMEOUT_S) as client,
        tqdm(
            total=sum(sizes),
            unit="B",
            unit_scale=True,
            desc="upload",
            file=sys.stderr,
            disable=len(args.files) == 1 and sizes[0] < BAR_FROM_BYTES,
            leave=False,
        ) as bar,
    ):
        for path, size in zip(args.files, sizes, strict=True):
            model = client.upload_model(path)
            s = model.summary
            bar.write(
                f"{model.id}  {path}  nodes={s.n_nodes} params={s.params} macs={_macs(model)}",
                file=sys.stdout,
            )
            bar.update(size)
    return 0


def cmd_models_list(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        models = client.models(limit=args.limit, newest_first=True)
    if args.json:
        print_json(models)
        return 0
    rows = [
        {
            "id": m.id[:12],
            "format": m.format.value,
            "file": m.filename[:40],
            "size": f"{m.size_bytes:,}",
            "nodes": m.summary.n_nodes,
            "macs": _macs(m),
            "uploaded": m.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        }
        for m in models
    ]
    print(table(rows, ["id", "format", "file", "size", "nodes", "macs", "uploaded"]))
    say_page(models, "models")
    return 0


def cmd_models_show(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        model = client.model(args.id)
        measured = client.measurements(model_id=model.id, limit=args.limit, newest_first=True)
    if args.json:
        print(
            json.dumps(
                {
                    "model": model.model_dump(mode="json"),
                    "measurements": [m.model_dump(mode="json") for m in measured],
                },
                indent=2,
            )
        )
        return 0
    s = model.summary
    print(f"{model.id}  {model.filename}  {model.format.value}, {model.size_bytes:,} bytes")
    print(f"nodes {s.n_nodes}, params {s.params:,}, MACs {_macs(model)}, opset {s.opset}")
    counts = sorted(s.op_counts.items(), key=lambda kv: (-kv[1], kv[0]))
    print("ops   " + ", ".join(f"{op} {n}" for op, n in counts))
    for kind, tensors in (("in", s.inputs), ("out", s.outputs)):
        print(f"{kind:<5} " + ", ".join(f"{t.name} {t.dtype}{list(t.shape)}" for t in tensors))
    if measured:
        print()
        _print_measurements(measured)
        say_page(measured, "measurements")
    return 0


def cmd_models_delete(args: argparse.Namespace) -> int:
    confirm(args, f"model {args.id} with its jobs, measurements and file")
    with client_from(args) as client:
        say_deleted(client.delete_model(args.id, force=args.force))
    return 0


def cmd_jobs_create(args: argparse.Namespace) -> int:
    selector: dict[str, str | int] | None = None
    if args.selector is not None:
        selector = dict(kv(args.selector, "--selector"))
    if (args.device is None) == (selector is None):
        raise UsageError("give --device ID or --selector KEY=VALUE (--selector alone: any device)")
    with client_from(args) as client:
        job = client.create_job(
            full_id(client, "model", args.model),
            device_id=args.device,
            selector=selector,
            config=runtime_config(args),
        )
        dedup = "  (deduplicated)" if job.deduplicated else ""
        print(f"{job.id}  {job.state.value}{dedup}", flush=True)
        if job.online_matches == 0 and job.state.pending:
            target = f"device {args.device}" if args.device else f"selector {selector or '{}'}"
            print(
                f"note: no online device can take it now ({target}, runtime "
                f"{job.config.runtime}); it waits in the queue until one does "
                "(`latlab devices list` shows which are online)",
                file=sys.stderr,
            )
        if args.wait:
            return _wait(client, [job.id], args.timeout_s)
    return 0


def _wait(client: Client, job_ids: list[str], timeout_s: float) -> int:
    failed = 0
    again = f"latlab jobs wait {' '.join(job_ids) if len(job_ids) <= 3 else '...'}"
    with following("the job" if len(job_ids) == 1 else f"each of the {len(job_ids)} jobs", again):
        for i, job in enumerate(client.iter_finished(job_ids, timeout_s=timeout_s), start=1):
            if job.state == JobState.done and job.measurement_id is not None:
                detail = "  " + _latency(client.measurement(job.measurement_id))
            else:
                detail = f"  {job.error}" if job.error else ""
            print(f"[{i}/{len(job_ids)}] {job.id}  {job.state.value}{detail}", flush=True)
            failed += job.state != JobState.done
    return 1 if failed else 0


def _latency(m: MeasurementOut) -> str:
    """A measurement in one phrase: median, its interval and what to make of it."""
    ci = m.quality.ci_halfwidth_pct
    interval = f" ±{ci:.1f} %" if ci is not None else ""
    verdict = f", {m.quality.verdict}" if m.quality.verdict else ""
    return (
        f"median {m.stats.median_ms:.3f} ms{interval} (n={m.stats.n}{verdict}; measurement {m.id})"
    )


def cmd_jobs_wait(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        return _wait(client, full_ids(client, "job", args.ids) or [], args.timeout_s)


def cmd_jobs_show(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        job = client.job(args.id)
        measured = (
            client.measurement(job.measurement_id) if job.measurement_id is not None else None
        )
    if args.json:
        print_json(job)
        return 0
    target = f"device {job.device_id}" if job.device_id else f"selector {job.selector}"
    print(f"{job.id}  {job.state.value}  model {job.model_id}  {target}")
    print(
        f"config   {job.config.runtime} "
        + " ".join(
            f"{k}={v}" for k, v in job.config.model_dump(mode="json").items() if k != "runtime"
        )
    )
    print(
        f"attempts {job.attempts}/{job.max_attempts}"
        + (f", claimed by {job.claimed_by}" if job.claimed_by else "")
    )
    times = [
        ("created", job.created_at),
        ("deadline", job.deadline_at),
        ("finished", job.finished_at),
    ]
    print("times    " + ", ".join(f"{k} {t:%Y-%m-%d %H:%M:%S}" for k, t in times if t))
    if job.error:
        print(f"error    {job.error}")
    if measured is not None:
        print(f"result   {_latency(measured)}")
    return 0


def cmd_jobs_cancel(args: argparse.Namespace) -> int:
    failed = 0
    with client_from(args) as client:
        for job_id in args.ids:
            try:
                job = client.cancel_job(job_id)
            except ApiError as exc:
                if exc.status != 409:  # already finished: say so, go on with the others
                    raise
                print(f"{job_id}  not cancelled: {exc.message}", file=sys.stderr)
                failed += 1
                continue
            print(f"{job.id}  {job.state.value}")
    return 1 if failed else 0


def cmd_jobs_list(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        jobs = client.jobs(state=args.state, limit=args.limit, newest_first=True)
    if args.json:
        print_json(jobs)
        return 0
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
    say_page(jobs, "jobs")
    return 0


def cmd_devices_list(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        devices = client.devices()
    if args.json:
        print_json(devices)
        return 0
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
        print_json(points)
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
            model_id=None if args.model is None else full_id(client, "model", args.model),
            device_id=args.device,
            job_id=None if args.job is None else full_id(client, "job", args.job),
            ops=args.json,
            samples=args.json,
            limit=args.limit,
            newest_first=True,
        )
    if args.json:
        print_json(rows)
        return 0
    _print_measurements(rows)
    say_page(rows, "measurements")
    return 0


def _print_measurements(rows: list[MeasurementOut]) -> None:
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


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    m = sub.add_parser("models", help="models: upload, list, show").add_subparsers(
        dest="models_cmd", required=True
    )
    mu = add_user_flags(m.add_parser("upload", help="upload ONNX or TFLite files"))
    mu.add_argument("files", nargs="+", type=Path)
    mu.set_defaults(func=cmd_models_upload)
    ml = add_user_flags(m.add_parser("list", help="list models"))
    ml.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    add_json_flag(ml)
    ml.set_defaults(func=cmd_models_list)
    ms_ = add_user_flags(m.add_parser("show", help="a model's summary and its measurements"))
    ms_.add_argument("id", help="model id (sha256, or a unique prefix)")
    ms_.add_argument("--limit", type=int, default=20, help="measurements shown (default 20)")
    add_json_flag(ms_)
    ms_.set_defaults(func=cmd_models_show)
    md = add_user_flags(
        m.add_parser(
            "delete",
            help="delete a model with its jobs, measurements and file",
            description="Delete a model with its jobs (any state), measurements, per-op rows "
            "and file. Refused while a dataset or LUT uses it (the answer names them) unless "
            "--force: their entries of it go too. The device canary's model is never deleted.",
        )
    )
    md.add_argument("id", help="model id (or a unique prefix)")
    md.add_argument("--force", action="store_true", help="even if datasets or LUTs use it")
    add_delete_flags(md)
    md.set_defaults(func=cmd_models_delete)

    j = sub.add_parser("jobs", help="timing jobs: create, wait, list, show, cancel")
    js = j.add_subparsers(dest="jobs_cmd", required=True)
    jc = add_user_flags(js.add_parser("create", help="time a model on a device"))
    jc.add_argument("--model", required=True, help="model id (sha256)")
    jc.add_argument("--device", help="device id or name")
    jc.add_argument("--selector", nargs="*", metavar="KEY=VALUE", help="any matching device")
    add_runtime_flags(jc)
    jc.add_argument("--wait", action="store_true", help="wait for the result")
    add_timeout_flag(jc, 3600)
    jc.set_defaults(func=cmd_jobs_create)
    jw = add_user_flags(js.add_parser("wait", help="wait for jobs to finish"))
    jw.add_argument("ids", nargs="+")
    add_timeout_flag(jw, 3600)
    jw.set_defaults(func=cmd_jobs_wait)
    jl = add_user_flags(js.add_parser("list", help="list jobs"))
    jl.add_argument("--state", choices=[s.value for s in JobState])
    jl.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    add_json_flag(jl)
    jl.set_defaults(func=cmd_jobs_list)
    jsh = add_user_flags(js.add_parser("show", help="a job: config, state, result"))
    jsh.add_argument("id")
    add_json_flag(jsh)
    jsh.set_defaults(func=cmd_jobs_show)
    jca = add_user_flags(js.add_parser("cancel", help="cancel queued or running jobs"))
    jca.add_argument("ids", nargs="+")
    jca.set_defaults(func=cmd_jobs_cancel)

    dv = sub.add_parser("devices", help="registered devices").add_subparsers(
        dest="devices_cmd", required=True
    )
    dl = add_user_flags(dv.add_parser("list", help="list devices"))
    add_json_flag(dl)
    dl.set_defaults(func=cmd_devices_list)
    dc = add_user_flags(dv.add_parser("canary", help="the device's canary series"))
    dc.add_argument("device", help="device id or name")
    dc.add_argument("--limit", type=int, default=50, help="the latest N points")
    add_json_flag(dc)
    dc.set_defaults(func=cmd_devices_canary)
    dr = add_user_flags(dv.add_parser("revoke", help="revoke device tokens"))
    dr.add_argument("ids", nargs="+", help="device ids or names")
    dr.set_defaults(func=cmd_devices_revoke)

    me = add_user_flags(sub.add_parser("measurements", help="query measurements"))
    me.add_argument("--model")
    me.add_argument("--device", help="device id or name")
    me.add_argument("--job")
    me.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    me.add_argument("--json", action="store_true", help="full rows: samples and per-op times")
    me.set_defaults(func=cmd_measurements)
