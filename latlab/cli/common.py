"""What every verb shares: the client from flags or env, KEY=VALUE parsing, arch lists,
tables and figures, the runtime-config flags, and the usage error (exit 2)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from latlab.client import Client, Page
from latlab.config import NoApiKey, resolve_connection
from latlab.errors import LatlabError
from latlab.runtimes import DEFAULT_RUNTIME, RuntimeConfig, parse_config, runtimes
from latlab.schemas import Deleted

__all__ = [
    "CURRENT_HINT",
    "TRANSFER_TIMEOUT_S",
    "UsageError",
    "add_delete_flags",
    "add_json_flag",
    "add_runtime_flags",
    "add_sources_flag",
    "add_timeout_flag",
    "add_user_flags",
    "archs_from",
    "client_from",
    "confirm",
    "figure",
    "following",
    "full_id",
    "full_ids",
    "int_params",
    "kv",
    "ms",
    "print_json",
    "require_extras",
    "runtime_config",
    "say_deleted",
    "say_page",
    "sources_from",
    "table",
    "write_output",
]

#: What a registration that did not become current says (the registry's rule kept another).
CURRENT_HINT = (
    "not current: the current version validates better "
    "(latlab predictors --current ID to serve this one)"
)


class UsageError(Exception):
    """Bad flags: the command exits 2 with the message."""


#: What each extra installs that a verb imports, checked before the verb starts its work.
EXTRA_MODULES = {
    "server": ("fastapi", "uvicorn", "sqlalchemy", "alembic"),
    "agent": ("onnxruntime",),
    "train": ("torch",),
}


def require_extras(command: str, *extras: str) -> None:
    """Fail in one line, before any work, when an extra the verb needs is not installed."""
    missing = [
        module
        for extra in extras
        for module in EXTRA_MODULES[extra]
        if importlib.util.find_spec(module) is None
    ]
    if missing:
        raise LatlabError(
            f"latlab {command} needs {', '.join(missing)}, not installed here: "
            f"pip install 'latlab[{','.join(extras)}]'"
        )


def add_user_flags(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
    where = sp.add_argument_group(
        "server and key",
        "each from the flag, else LATLAB_SERVER_URL / LATLAB_API_KEY, else the profile "
        "(`latlab login`), else a local server's generated credentials.json",
    )
    where.add_argument("--server", help="server URL (default http://127.0.0.1:8000)")
    where.add_argument("--api-key", help="user API key")
    where.add_argument("--profile", help="a profile saved by `latlab login` (default: default)")
    return sp


def client_from(args: argparse.Namespace, timeout_s: float | None = None) -> Client:
    try:
        found = resolve_connection(args.server, args.api_key, args.profile)
    except NoApiKey as exc:
        raise UsageError(str(exc)) from None
    if timeout_s is None:
        return Client(found.server_url, found.api_key)
    return Client(found.server_url, found.api_key, timeout_s=timeout_s)


#: Exports, imports and uploads move whole files: give them longer than a plain call.
TRANSFER_TIMEOUT_S = 600.0


def add_timeout_flag(sp: argparse.ArgumentParser, default_s: float) -> None:
    sp.add_argument(
        "--timeout-s",
        type=float,
        default=default_s,
        help="give up waiting after this many seconds (default %(default)s; the work goes on)",
    )


def write_output(output: str | None, data: bytes | str, default: str, what: str) -> None:
    """``-o FILE`` (default ``default``; ``-`` is stdout) and, for a file, one line saying so."""
    raw = data.encode() if isinstance(data, str) else data
    if output == "-":
        sys.stdout.buffer.write(raw)
        sys.stdout.flush()
        return
    path = Path(output or default)
    path.write_bytes(raw)
    print(f"{path}  {what}  {len(raw):,} bytes")


#: The full length of each kind of id; a shorter one is a prefix the server completes.
ID_LENGTH = {"model": 64, "job": 32, "dataset": 32}


def full_id(client: Client, kind: str, ref: str) -> str:
    """The full id of a model, job or dataset given by a unique prefix (as the tables print
    them): the server completes it (an unknown or shared prefix is its 404 or 422)."""
    if len(ref) >= ID_LENGTH[kind]:
        return ref
    if kind == "model":
        return client.model(ref).id
    if kind == "job":
        return client.job(ref).id
    return client.dataset(ref).id


def full_ids(client: Client, kind: str, refs: Sequence[str] | None) -> list[str] | None:
    return None if refs is None else [full_id(client, kind, ref) for ref in refs]


def add_delete_flags(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--yes", action="store_true", help="do not ask (needed when not on a terminal)")


def confirm(args: argparse.Namespace, what: str) -> None:
    """Ask before a delete on a terminal; elsewhere, only ``--yes`` deletes."""
    if args.yes:
        return
    if not sys.stdin.isatty():
        raise UsageError(f"deleting {what} cannot be undone: pass --yes to do it")
    if input(f"delete {what}? It cannot be undone [y/N] ").strip().lower() not in ("y", "yes"):
        raise LatlabError("not deleted")


def say_deleted(deleted: Deleted) -> None:
    """What a delete removed and changed, the counts that are not zero."""
    removed = ", ".join(f"{k} {n}" for k, n in deleted.removed.items() if n) or "nothing else"
    changed = ", ".join(f"{k} {n}" for k, n in deleted.changed.items() if n)
    print(f"deleted {deleted.kind.value} {deleted.id}: removed {removed}")
    if changed:
        print(f"changed {changed}")
    if deleted.current_predictor is not None:
        print(f"current predictor now {deleted.current_predictor}")


def say_page(page: Page[Any], what: str) -> None:
    """Under a table of a page: how many there are in all, when the page is not all of them."""
    if page.total > len(page):
        print(
            f"showing the latest {len(page)} of {page.total:,} {what} (--limit N for more)",
            file=sys.stderr,
        )


def add_json_flag(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--json", action="store_true", help="the full records as JSON")


def print_json(data: BaseModel | Sequence[BaseModel]) -> None:
    """Records as the API gives them, indented."""
    if isinstance(data, BaseModel):
        print(json.dumps(data.model_dump(mode="json"), indent=2))
    else:
        print(json.dumps([d.model_dump(mode="json") for d in data], indent=2))


@contextmanager
def following(what: str, again: str) -> Iterator[None]:
    """Ctrl-C while following server-side work: say that it goes on, and how to follow it
    again (the command still exits 130)."""
    try:
        yield
    except KeyboardInterrupt:
        print(
            f"\nstopped following; {what} goes on on the server. Follow it again with: {again}",
            file=sys.stderr,
        )
        raise


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


def add_sources_flag(sp: argparse.ArgumentParser, help_prefix: str = "") -> None:
    """``--from all|DEVICE...``: the source devices of a transfer predictor (``sources_from``)."""
    sp.add_argument(
        "--from",
        dest="sources",
        nargs="+",
        metavar="all|DEVICE",
        help=f"{help_prefix}source devices (default all: every other device with latencies "
        "for the space)",
    )


def sources_from(args: argparse.Namespace) -> list[str] | None:
    """The ``--from`` devices; None for all (the flag left out, or ``all``)."""
    if not args.sources or args.sources == ["all"]:
        return None
    if "all" in args.sources:
        raise UsageError("--from takes 'all' or device ids/names, not both")
    return list(args.sources)


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
