"""latlab: time models on real devices, build latency datasets, lookup tables and predictors.

Exit codes: 0 success, 1 an operational error (the server refused, a job failed), 2 usage,
130 interrupted. One module per group of verbs; the role packages (server, agent) are imported
inside the verb that needs them, so ``latlab models upload`` works with only the core installed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version

from latlab.cli import adapt, datasets, login, luts, measure, predict, runtimes, spaces
from latlab.cli.common import UsageError
from latlab.errors import LatlabError, ServerUnreachable
from latlab.lab import roles
from latlab.logs import configure_logging

__all__ = ["main"]

EPILOG = """\
start here:
  latlab quickstart                      the whole loop on this machine, end to end
  latlab server                          the API server (keys generated in ~/.latlab)
  latlab agent --server URL --enroll-key KEY
                                         a device agent: registers, then times jobs
  latlab login --server URL              keep the server URL and an API key in a profile

everyday:
  latlab models upload net.onnx          then: latlab jobs create --model ID --device NAME --wait
  latlab dataset build --space nb201 --n 100 --device NAME --wait
  latlab lut build --device NAME --space nb201 --wait
  latlab train --device NAME             then: latlab predict --device NAME 0 1 2
  latlab dataset export ID --format parquet

`latlab COMMAND -h` shows a command's flags. Docs: README.md.
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="latlab",
        description=__doc__.splitlines()[0] if __doc__ else "",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"latlab {_version()}")
    p.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log at INFO level; -vv: DEBUG, every HTTP request included",
    )
    p.add_argument(
        "--log-json", action="store_true", help="log one JSON object per line (for collectors)"
    )
    sub = p.add_subparsers(dest="command", required=True)
    for group in (roles, login, measure, runtimes, spaces, datasets, luts, predict, adapt):
        group.add_parsers(sub)
    return p


def _version() -> str:
    try:
        return version("latlab")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown (not installed)"


def _parser_of(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> argparse.ArgumentParser:
    """The (sub)command parser ``args`` were parsed by, so a usage error shows its usage."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and action.dest is not None:
            chosen = action.choices.get(getattr(args, action.dest, None) or "")
            if chosen is not None:
                return _parser_of(chosen, args)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    # WARNING, -v INFO, -vv DEBUG
    configure_logging(logging.WARNING - 10 * min(args.verbose, 2), json_lines=args.log_json)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except UsageError as exc:
        _parser_of(parser, args).error(str(exc))  # exits 2
    except BrokenPipeError:  # `latlab ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except ServerUnreachable as exc:
        print(f"latlab: error: {exc}", file=sys.stderr)
        print(
            "is `latlab server` running there? Another server: --server URL, "
            "LATLAB_SERVER_URL or `latlab login`",
            file=sys.stderr,
        )
        return 1
    except (LatlabError, TimeoutError, OSError) as exc:
        print(f"latlab: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
