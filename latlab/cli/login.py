"""``latlab login``: check a server URL and an API key, and keep them in a profile."""

from __future__ import annotations

import argparse
import getpass
import sys

from latlab.cli.common import UsageError
from latlab.client import Client
from latlab.config import DEFAULT_PROFILE, DEFAULT_SERVER_URL, ClientSettings, save_profile

__all__ = ["add_parsers"]


def cmd_login(args: argparse.Namespace) -> int:
    url = args.server or ClientSettings().server_url or DEFAULT_SERVER_URL
    key = args.api_key
    if not key:
        if not sys.stdin.isatty():
            key = sys.stdin.readline().strip()  # `... | latlab login --server URL`
        else:
            key = getpass.getpass(f"API key for {url}: ").strip()
    if not key:
        raise UsageError("no API key given (--api-key, or type it when asked)")
    with Client(url, key) as client:
        devices = client.devices()  # an authenticated call: a wrong key is refused here
    path = save_profile(args.profile, url, key)
    online = sum(d.online for d in devices)
    print(
        f"profile {args.profile!r}: {url.rstrip('/')} ({len(devices)} devices, {online} online); "
        f"saved in {path}"
    )
    if args.profile != DEFAULT_PROFILE:
        print(f"use it with --profile {args.profile} or LATLAB_PROFILE={args.profile}")
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lg = sub.add_parser(
        "login",
        help="check a server and an API key, and keep them in a profile (~/.latlab/client.json)",
        description="Check the key against the server, then keep the URL and the key in "
        "~/.latlab/client.json (readable by you only). Every other command uses them when no "
        "--server/--api-key flag or LATLAB_* variable says otherwise.",
    )
    lg.add_argument(
        "--server", help=f"server URL (default LATLAB_SERVER_URL, else {DEFAULT_SERVER_URL})"
    )
    lg.add_argument("--api-key", help="the key (default: asked for, or read from stdin)")
    lg.add_argument("--profile", default=DEFAULT_PROFILE, help="profile name (default: default)")
    lg.set_defaults(func=cmd_login)
