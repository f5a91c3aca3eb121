"""``latlab runtimes``: the registered runtimes (built in and plug-ins) and their settings."""

from __future__ import annotations

import argparse

__all__ = ["add_parsers"]


def cmd_runtimes(args: argparse.Namespace) -> int:
    from latlab.cli.common import table
    from latlab.runtimes import ProtocolConfig, runtimes

    rows = []
    for name, spec in runtimes().items():
        own = {
            field: info.default
            for field, info in spec.config.model_fields.items()
            if field not in ProtocolConfig.SHARED
        }
        rows.append(
            {
                "runtime": name,
                "format": spec.model_format.value,
                "times on": spec.target,
                "luts": "yes" if spec.builds_luts else "no",
                "settings (defaults)": ", ".join(
                    f"{k}={getattr(v, 'value', v)}" for k, v in own.items()
                )
                or "-",
                "runner": spec.runner,
            }
        )
    print(table(rows, list(rows[0])))
    shared = ", ".join(sorted(ProtocolConfig.SHARED - {"runtime"}))
    print(f"\nevery runtime also takes the protocol's settings: {shared}")
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sp = sub.add_parser(
        "runtimes",
        help="the runtimes this install knows (built in and plug-ins) and their settings",
    )
    sp.set_defaults(func=cmd_runtimes)
