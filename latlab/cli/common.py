"""What every verb shares: the client from flags or env, KEY=VALUE parsing, arch lists,
tables and figures, the runtime-config flags, and the usage error (exit 2)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from latlab.client import Client
from latlab.config import ClientSettings
from latlab.runtimes import DEFAULT_RUNTIME, RuntimeConfig, parse_config, runtimes

__all__ = [
    "UsageError",
    "add_runtime_flags",
    "add_user_flags",
    "archs_from",
    "client_from",
    "figure",
    "int_params",
    "kv",
    "ms",
    "runtime_config",
    "table",
]


class UsageError(Exception):
    """Bad flags: the command exits 2 with the message."""


def add_user_flags(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
    sp.add_argument("--server", help="server URL (env LATLAB_SERVER_URL)")
    sp.add_argument("--api-key", help="user API key (env LATLAB_API_KEY)")
    return sp


def client_from(args: argparse.Namespace, timeout_s: float | None = None) -> Client:
    settings = ClientSettings()
    url = args.server or settings.server_url
    key = args.api_key or settings.api_key.get_secret_value()
    if not key:
        raise UsageError("no API key: pass --api-key or set LATLAB_API_KEY")
    return Client(url, key) if timeout_s is None else Client(url, key, timeout_s=timeout_s)


def kv(items: Sequence[str] | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{what} must look like KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def int_params(items: Sequence[str] | None, what: str = "--param") -> dict[str, int]:
    """``KEY=INT`` flags (a search space's parameters)."""
    params = kv(items, what)
    try:
        return {k: int(v) for k, v in params.items()}
    except ValueError:
        raise UsageError(f"{what} values are integers, got {params}") from None


def archs_from(archs: Sequence[str] | None, archs_file: str | None) -> list[str | int] | None:
    """Archs given as arguments, then those of ``archs_file`` (one per line; blank lines and
    ``#`` comments skipped); None when there are none."""
    out: list[str | int] = list(archs or [])
    if archs_file is not None:
        for line in Path(archs_file).read_text().splitlines():
            arch = line.split("#", 1)[0].strip()
            if arch:
                out.append(arch)
    return out or None


def figure(value: Any, fmt: str = ".4f", scale: float = 1.0, suffix: str = "") -> str:
    """A metric as text; ``-`` when it is missing, not a number, or not finite (a Spearman
    rho of a one-arch split is NaN, stored as null)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return "-"
    return f"{value * scale:{fmt}}{suffix}"


def table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def add_runtime_flags(sp: argparse.ArgumentParser) -> None:
    """The runtime config of a job or a campaign (unset flags keep the protocol defaults)."""
    sp.add_argument("--runtime", choices=list(runtimes()), help=f"default {DEFAULT_RUNTIME}")
    sp.add_argument("--threads", type=int)
    sp.add_argument("--provider", help="execution provider (default CPUExecutionProvider)")
    sp.add_argument(
        "--no-xnnpack",
        action="store_true",
        help="litert, benchmark_model: the builtin kernels, not XNNPACK",
    )
    sp.add_argument(
        "--gpu-delegate",
        action="store_true",
        help="litert, benchmark_model: the TFLite GPU delegate",
    )
    sp.add_argument(
        "--protocol",
        choices=["adaptive", "fixed"],
        help="adaptive (the default): timed until the median's 95 %% interval is within "
        "--target-ci-pct; fixed: exactly the floors below (benchmark_model: fixed only)",
    )
    sp.add_argument("--warmup-runs", type=int, help="at least this many warm-up runs")
    sp.add_argument("--warmup-s", type=float, help="at least this many seconds of warm-up")
    sp.add_argument("--runs", type=int, help="at least this many timed runs")
    sp.add_argument("--min-s", type=float, help="at least this many seconds of timed runs")
    sp.add_argument("--max-s", type=float, help="adaptive: at most this many seconds timed")
    sp.add_argument(
        "--target-ci-pct", type=float, help="adaptive: the interval's half-width to reach (1 %%)"
    )
    sp.add_argument(
        "--retimes", type=int, help="adaptive: re-timings of a noisy or interfered run (2)"
    )
    sp.add_argument("--no-profile", action="store_true", help="skip the per-op profiled pass")
    sp.add_argument(
        "--deadline-s",
        type=float,
        help="fail the job if a device has no result this long after claiming it "
        "(default: 600 s + 10x the protocol's seconds: its caps for the adaptive one)",
    )


#: The flag of each config field where the CLI names it otherwise.
CONFIG_FLAGS = {
    "xnnpack": "--no-xnnpack",
    "use_gpu": "--gpu-delegate",
    "execution_provider": "--provider",
    "timed_runs": "--runs",
    "timed_s": "--min-s",
    "timed_max_s": "--max-s",
}


def runtime_config(args: argparse.Namespace) -> RuntimeConfig:
    fields = {
        "runtime": args.runtime,
        "xnnpack": False if args.no_xnnpack else None,
        "use_gpu": True if args.gpu_delegate else None,
        "threads": args.threads,
        "execution_provider": args.provider,
        "protocol": args.protocol,
        "warmup_runs": args.warmup_runs,
        "warmup_s": args.warmup_s,
        "timed_runs": args.runs,
        "timed_s": args.min_s,
        "timed_max_s": args.max_s,
        "target_ci_pct": args.target_ci_pct,
        "retimes": args.retimes,
        "profile_ops": not args.no_profile,
        "deadline_s": args.deadline_s,
    }
    runtime = args.runtime or DEFAULT_RUNTIME
    try:
        return parse_config({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        errors = [e for e in exc.errors() if e.get("type") != "default_factory_not_called"]
        raise UsageError("; ".join(_config_error(e, runtime) for e in errors)) from None


def _config_error(error: Any, runtime: str) -> str:
    """One config error in the CLI's words: a setting of another runtime names its flag."""
    where = ".".join(str(part) for part in error.get("loc", ()))
    if error.get("type") == "extra_forbidden":
        return f"{CONFIG_FLAGS.get(where, where)} is not a setting of {runtime}"
    text = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{CONFIG_FLAGS.get(where, where)}: {text}" if where else text
