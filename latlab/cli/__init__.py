"""The ``latlab`` command. Verbs are thin: parse, call one function, render.

Exit codes: 0 success, 1 an operational error (the server refused, a job failed), 2 usage.
One module per group of verbs; the role packages (server, agent) are imported inside the verb
that needs them, so ``latlab models upload`` works on a machine with only the core installed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from latlab.cli import datasets, luts, measure, predict, runtimes, spaces
from latlab.cli.common import UsageError
from latlab.errors import LatlabError
from latlab.lab import roles
from latlab.logs import configure_logging

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="latlab", description=__doc__.splitlines()[0] if __doc__ else ""
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    p.add_argument(
        "--log-json", action="store_true", help="log one JSON object per line (for collectors)"
    )
    sub = p.add_subparsers(dest="command", required=True)
    for group in (roles, measure, runtimes, spaces, datasets, luts, predict):
        group.add_parsers(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    configure_logging(logging.INFO if args.verbose else logging.WARNING, json_lines=args.log_json)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except UsageError as exc:
        parser.error(str(exc))  # exits 2
    except BrokenPipeError:  # `latlab ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (LatlabError, TimeoutError, OSError) as exc:
        print(f"latlab: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
