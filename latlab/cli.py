"""The ``latlab`` command. Verbs are thin: parse, call one function, render.

Exit codes: 0 success, 1 an operational error (the server refused, a job failed), 2 usage.
The role packages (server, agent) are imported inside the verb that needs them, so
``latlab models upload`` works on a machine with only the core installed.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from latlab.client import Client
from latlab.config import ClientSettings
from latlab.errors import LatlabError
from latlab.schemas import JobState, RuntimeConfig

__all__ = ["main"]

log = logging.getLogger("latlab")


class UsageError(Exception):
    pass


def _client(args: argparse.Namespace) -> Client:
    settings = ClientSettings()
    url = args.server or settings.server_url
    key = args.api_key or settings.api_key.get_secret_value()
    if not key:
        raise UsageError("no API key: pass --api-key or set LATLAB_API_KEY")
    return Client(url, key)


def _kv(items: Sequence[str] | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{what} must look like KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def _table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


# --------------------------------------------------------------------------- verbs


def cmd_server(args: argparse.Namespace) -> int:
    import uvicorn

    from server.app import create_app
    from server.config import Settings
    from server.credentials import ensure_credentials

    settings = ensure_credentials(Settings())
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level)
    return 0


def cmd_agent(args: argparse.Namespace) -> int:
    from agent.config import AgentSettings
    from agent.main import run_agent

    overrides: dict[str, Any] = {"labels": _kv(args.label, "--label")}
    for field in ("server_url", "enroll_key", "name", "state_file", "cache_dir", "cooldown_s"):
        value = getattr(args, field)
        if value is not None:
            overrides[field] = value
    settings = AgentSettings(**overrides)
    stop = threading.Event()

    def on_signal(signum: int, _: object) -> None:
        log.info("stopping on signal %s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    stats = run_agent(settings, stop)
    print(
        f"agent stopped: {len(stats.done)} done, {len(stats.failed)} failed, "
        f"{len(stats.released)} released"
    )
    return 0


def cmd_models_upload(args: argparse.Namespace) -> int:
    with _client(args) as client:
        for path in args.files:
            model = client.upload_model(path)
            s = model.summary
            macs = "?" if s.macs is None else f"{s.macs / 1e6:.1f}M"
            print(f"{model.id}  {path}  nodes={s.n_nodes} params={s.params} macs={macs}")
    return 0


def _runtime_config(args: argparse.Namespace) -> RuntimeConfig:
    fields = {
        "threads": args.threads,
        "execution_provider": args.provider,
        "warmup_runs": args.warmup_runs,
        "warmup_s": args.warmup_s,
        "timed_runs": args.runs,
        "timed_s": args.min_s,
        "profile_ops": not args.no_profile,
    }
    return RuntimeConfig(**{k: v for k, v in fields.items() if v is not None})


def cmd_jobs_create(args: argparse.Namespace) -> int:
    selector: dict[str, str | int] | None = None
    if args.selector is not None:
        selector = dict(_kv(args.selector, "--selector"))
    if (args.device is None) == (selector is None):
        raise UsageError("give --device ID or --selector KEY=VALUE (--selector alone: any device)")
    with _client(args) as client:
        job = client.create_job(
            args.model, device_id=args.device, selector=selector, config=_runtime_config(args)
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
    with _client(args) as client:
        return _wait(client, args.ids, args.timeout)


def cmd_jobs_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
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
    print(_table(rows, ["id", "state", "model", "device", "attempts", "error"]))
    return 0


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def cmd_measurements(args: argparse.Namespace) -> int:
    with _client(args) as client:
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
    table = [
        {
            "id": r.id,
            "model": (r.model_id or r.source.value)[:12],
            "device": r.device_id[:12],
            "median_ms": f"{r.stats.median_ms:.3f}",
            "p10_ms": _ms(r.stats.p10_ms),
            "p90_ms": _ms(r.stats.p90_ms),
            "n": r.stats.n,
            "runtime": f"{r.runtime} {r.runtime_version}",
            "threads": r.threads,
        }
        for r in rows
    ]
    print(
        _table(
            table,
            ["id", "model", "device", "median_ms", "p10_ms", "p90_ms", "n", "runtime", "threads"],
        )
    )
    return 0


def cmd_space_info(args: argparse.Namespace) -> int:
    from latlab.opkey import graph_cost
    from latlab.spaces import get_space

    space = get_space(args.space)
    example = space.example()
    cost = graph_cost(space.graph(example))
    print(f"{space.name}: {space.description}")
    print(f"size      {space.size:,} architectures (index 0..{space.size - 1})")
    print(f"example   index {example.index}")
    print(f"          string {space.encode(example)}")
    if hasattr(example, "vector"):
        print(f"          vector {','.join(str(v) for v in example.vector)}")
    print(f"          {cost.macs / 1e6:.2f} M MACs, {cost.params / 1e6:.3f} M params")
    return 0


def cmd_space_export(args: argparse.Namespace) -> int:
    from latlab.spaces import get_space

    space = get_space(args.space)
    arch = space.parse(args.arch)
    graph = space.graph(arch)
    if args.format == "onnx":
        from latlab.export.onnx import to_onnx

        data = to_onnx(graph, seed=args.seed).SerializeToString()
    else:
        from latlab.export.tflite import to_tflite

        data = to_tflite(graph, seed=args.seed)
    Path(args.output).write_bytes(data)
    print(
        f"{args.output}  {space.name} index {arch.index}  {len(graph.nodes)} nodes  {len(data):,} bytes"
    )
    return 0


def cmd_quickstart(args: argparse.Namespace) -> int:
    from latlab.quickstart import run_quickstart

    run_quickstart(Path(args.dir), out=sys.stdout)
    return 0


# --------------------------------------------------------------------------- parser


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="latlab", description=__doc__.splitlines()[0] if __doc__ else ""
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = p.add_subparsers(dest="command", required=True)

    def user(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--server", help="server URL (env LATLAB_SERVER_URL)")
        sp.add_argument("--api-key", help="user API key (env LATLAB_API_KEY)")
        return sp

    s = sub.add_parser("server", help="run the API server (settings from LATLAB_* env vars)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--log-level", default="info")
    s.set_defaults(func=cmd_server)

    a = sub.add_parser("agent", help="run a device agent: register once, then time jobs")
    a.add_argument("--server", dest="server_url", help="server URL")
    a.add_argument("--enroll-key", help="enrollment key (first run only)")
    a.add_argument("--name", help="device name (default: host name)")
    a.add_argument("--state-file", type=Path, help="where the device token is kept")
    a.add_argument("--cache-dir", type=Path, help="downloaded models")
    a.add_argument("--cooldown-s", type=float, help="pause between jobs")
    a.add_argument("--label", action="append", metavar="KEY=VALUE", help="device label")
    a.set_defaults(func=cmd_agent)

    m = sub.add_parser("models", help="models").add_subparsers(dest="models_cmd", required=True)
    mu = user(m.add_parser("upload", help="upload ONNX files"))
    mu.add_argument("files", nargs="+", type=Path)
    mu.set_defaults(func=cmd_models_upload)

    j = sub.add_parser("jobs", help="timing jobs").add_subparsers(dest="jobs_cmd", required=True)
    jc = user(j.add_parser("create", help="time a model on a device"))
    jc.add_argument("--model", required=True, help="model id (sha256)")
    jc.add_argument("--device", help="device id")
    jc.add_argument("--selector", nargs="*", metavar="KEY=VALUE", help="any matching device")
    jc.add_argument("--threads", type=int)
    jc.add_argument("--provider", help="execution provider (default CPUExecutionProvider)")
    jc.add_argument("--warmup-runs", type=int)
    jc.add_argument("--warmup-s", type=float)
    jc.add_argument("--runs", type=int, help="at least this many timed runs")
    jc.add_argument("--min-s", type=float, help="at least this many seconds of timed runs")
    jc.add_argument("--no-profile", action="store_true", help="skip the per-op profiled pass")
    jc.add_argument("--wait", action="store_true", help="wait for the result")
    jc.add_argument("--timeout", type=float, default=3600)
    jc.set_defaults(func=cmd_jobs_create)
    jw = user(j.add_parser("wait", help="wait for jobs to finish"))
    jw.add_argument("ids", nargs="+")
    jw.add_argument("--timeout", type=float, default=3600)
    jw.set_defaults(func=cmd_jobs_wait)
    jl = user(j.add_parser("list", help="list jobs"))
    jl.add_argument("--state", choices=[s.value for s in JobState])
    jl.add_argument("--limit", type=int, default=50)
    jl.set_defaults(func=cmd_jobs_list)

    me = user(sub.add_parser("measurements", help="query measurements"))
    me.add_argument("--model")
    me.add_argument("--device")
    me.add_argument("--job")
    me.add_argument("--limit", type=int, default=100)
    me.add_argument("--json", action="store_true", help="full rows: samples and per-op times")
    me.set_defaults(func=cmd_measurements)

    sp = sub.add_parser("space", help="search spaces").add_subparsers(
        dest="space_cmd", required=True
    )
    si = sp.add_parser("info", help="size, encodings and an example")
    si.add_argument("space", help="search space name (nb201)")
    si.set_defaults(func=cmd_space_info)
    se = sp.add_parser("export", help="one architecture as a model file")
    se.add_argument("space")
    se.add_argument("arch", help="index, arch string or vector")
    se.add_argument("--format", choices=["onnx", "tflite"], default="onnx")
    se.add_argument("-o", "--output", required=True)
    se.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    se.set_defaults(func=cmd_space_export)

    q = sub.add_parser("quickstart", help="the whole loop on this machine, end to end")
    q.add_argument("--dir", default="latlab-quickstart", help="where its data goes (wiped)")
    q.set_defaults(func=cmd_quickstart)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except UsageError as exc:
        parser.error(str(exc))  # exits 2
    except (LatlabError, TimeoutError) as exc:
        print(f"latlab: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
