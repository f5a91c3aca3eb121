"""Verbs that run a role in this process: the server, an agent, the quickstart. The role
packages are imported inside the verb, so the core installs without them."""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from latlab.cli.common import UsageError, kv, require_extras
from latlab.errors import LatlabError

__all__ = ["add_parsers"]

log = logging.getLogger("latlab")


def cmd_server(args: argparse.Namespace) -> int:
    require_extras("server", "server")
    import uvicorn
    from sqlalchemy.exc import SQLAlchemyError

    from latlab.server.app import create_app
    from latlab.server.config import Settings
    from latlab.server.credentials import ensure_credentials
    from latlab.server.db import connection_problem
    from latlab.server.errors import ServerError

    settings = ensure_credentials(Settings())
    try:
        app = create_app(settings)
    except ServerError as exc:  # the blob store does not answer
        raise LatlabError(f"the server cannot start: {exc.message}") from exc
    except (SQLAlchemyError, ImportError) as exc:  # down, refused, unknown, driver missing
        problem = connection_problem(settings.resolved_database_url, exc)
        raise LatlabError(f"the server cannot start: {problem}") from None
    tune_gc()
    # log_config=None: uvicorn's loggers go through latlab's handler (text or --log-json)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        log_config=None,
    )
    return 0


def tune_gc() -> None:
    """The server's collector: a search job's 10,000-arch answer allocates some 100,000
    objects, and at Python's default first threshold (700) it set off passes over the whole
    heap during the request (an OFA LUT batch served in 150-170 ms, 63-93 ms with 50,000).
    What the app built at start (routes, schemas, SQLAlchemy's metadata) is frozen out of
    every pass."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def cmd_agent(args: argparse.Namespace) -> int:
    if args.adb_serial is None:  # a phone agent times with benchmark_model on the phone
        require_extras("agent", "agent")
    from latlab.agent.config import AgentSettings
    from latlab.agent.main import run_agent

    overrides: dict[str, Any] = {"labels": kv(args.label, "--label")}
    for field in (
        "server_url",
        "enroll_key",
        "name",
        "state_file",
        "cache_dir",
        "cooldown_s",
        "timing_cpus",
        "max_temperature_c",
        "max_thermal_status",
        "adb_serial",
        "adb_path",
        "benchmark_model_path",
    ):
        value = getattr(args, field)
        if value is not None:
            overrides[field] = value
    if args.fixed_performance:
        overrides["fixed_performance"] = True
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


def cmd_quickstart(args: argparse.Namespace) -> int:
    from latlab.lab.quickstart import MIN_ARCHS, run_quickstart

    if args.archs is not None and args.archs < MIN_ARCHS:
        raise UsageError(f"--archs: at least {MIN_ARCHS} (half trains the LUTs and the GCN)")
    require_extras("quickstart", "server", "agent", "train")

    extra: dict[str, Any] = {} if args.archs is None else {"n_archs": args.archs}
    if args.latbench is not None:
        extra["latbench"] = Path(args.latbench)
    run_quickstart(Path(args.dir), out=sys.stdout, **extra)
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    a.add_argument(
        "--timing-cpus",
        metavar="CPUS",
        help="time on these CPUs only, e.g. 3 or 2,3; the rest of the agent keeps off them",
    )
    a.add_argument(
        "--max-temperature-c",
        type=float,
        help="claim no job while the host's hottest thermal zone is above this",
    )
    a.add_argument(
        "--max-thermal-status",
        type=int,
        help="a phone: claim no job while Android's thermal status is above this (0-6)",
    )
    a.add_argument("--label", action="append", metavar="KEY=VALUE", help="device label")
    phone = a.add_argument_group("an Android phone over adb (one agent per phone)")
    phone.add_argument("--adb-serial", help="time on this phone with benchmark_model")
    phone.add_argument("--adb", dest="adb_path", help="the adb executable (default: adb)")
    phone.add_argument(
        "--benchmark-model",
        dest="benchmark_model_path",
        help="benchmark_model on the phone (default /data/local/tmp/benchmark_model)",
    )
    phone.add_argument(
        "--fixed-performance",
        action="store_true",
        help="hold the phone in fixed-performance mode while it measures (Android 12+)",
    )
    a.set_defaults(func=cmd_agent)

    q = sub.add_parser("quickstart", help="the whole loop on this machine, end to end")
    q.add_argument("--dir", default="latlab-quickstart", help="where its data goes (wiped)")
    q.add_argument(
        "--archs", type=int, help="NAS-Bench-201 archs to measure (default 40, at least 8)"
    )
    q.add_argument(
        "--latbench",
        help="the 13 LatBench .pickle files (BRP-NAS), the transfer predictor's sources "
        "(default: ../shared/data/latbench beside this checkout; none: that line is skipped)",
    )
    q.set_defaults(func=cmd_quickstart)
