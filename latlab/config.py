"""Which server and which API key the CLI and the SDK use.

Each is looked up in this order; the first place that has it wins:

1. what the caller passes (``--server``, ``--api-key``; ``Client.connect(...)`` arguments);
2. the environment: ``LATLAB_SERVER_URL``, ``LATLAB_API_KEY``;
3. a profile in ``~/.latlab/client.json``, written by ``latlab login`` (``--profile NAME`` or
   ``LATLAB_PROFILE``; default ``default``);
4. for a server on this machine (a loopback URL) only: the API key ``latlab server`` generated
   in ``<LATLAB_DATA_DIR>/credentials.json`` (default ``~/.latlab``).

The server URL defaults to ``http://127.0.0.1:8000``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from latlab.errors import LatlabError

__all__ = [
    "DEFAULT_PROFILE",
    "DEFAULT_SERVER_URL",
    "ClientSettings",
    "Connection",
    "NoApiKey",
    "profiles_path",
    "resolve_connection",
    "save_profile",
]

DEFAULT_SERVER_URL = "http://127.0.0.1:8000"
DEFAULT_PROFILE = "default"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class ClientSettings(BaseSettings):
    """The environment's part (``LATLAB_*``)."""

    model_config = SettingsConfigDict(env_prefix="LATLAB_", extra="ignore")

    server_url: str | None = None
    api_key: SecretStr = SecretStr("")
    profile: str = DEFAULT_PROFILE
    #: Where ``latlab server`` keeps its data and its generated credentials.json.
    data_dir: Path = Path("~/.latlab")


class NoApiKey(LatlabError):
    """No API key anywhere it is looked for; the message lists the places."""


@dataclass(frozen=True)
class Connection:
    server_url: str
    api_key: str
    #: Where the key came from, for messages ("LATLAB_API_KEY", "profile 'lab' in ...").
    key_from: str


def profiles_path() -> Path:
    return Path.home() / ".latlab" / "client.json"


def _profiles() -> dict[str, Any]:
    path = profiles_path()
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise LatlabError(f"{path} is not readable JSON ({exc}): fix or delete it") from None
    profiles = data.get("profiles") if isinstance(data, dict) else None
    return profiles if isinstance(profiles, dict) else {}


def save_profile(name: str, server_url: str, api_key: str) -> Path:
    """Store (or replace) a profile; the file is readable by its owner only."""
    path = profiles_path()
    profiles = _profiles()
    profiles[name] = {"server_url": server_url.rstrip("/"), "api_key": api_key}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"profiles": profiles}, f, indent=2)
    os.replace(path.with_suffix(".tmp"), path)
    return path


def resolve_connection(
    server_url: str | None = None, api_key: str | None = None, profile: str | None = None
) -> Connection:
    """The server and key to use (the order is the module's docstring); ``NoApiKey`` names
    every place looked at when there is no key."""
    env = ClientSettings()
    name = profile or env.profile
    stored = _profiles().get(name) or {}
    where = f"profile {name!r} in {profiles_path()}"
    url = server_url or env.server_url or stored.get("server_url") or DEFAULT_SERVER_URL
    candidates = [
        (api_key, "--api-key"),
        (env.api_key.get_secret_value(), "LATLAB_API_KEY"),
        (stored.get("api_key") if stored.get("server_url", url) == url else None, where),
    ]
    generated = env.data_dir.expanduser() / "credentials.json"
    if urlsplit(url).hostname in LOOPBACK:
        candidates.append((_generated_key(generated), str(generated)))
    for key, source in candidates:
        if key:
            return Connection(url.rstrip("/"), str(key), source)
    looked = ", ".join(source for _, source in candidates)
    raise NoApiKey(
        f"no API key for {url}: looked at {looked}. Run `latlab login --server {url}` "
        "(it asks for the key and keeps it in a profile), or set LATLAB_API_KEY"
    )


def _generated_key(path: Path) -> str | None:
    try:
        key = json.loads(path.read_text()).get("api_key")
    except (OSError, ValueError, AttributeError):
        return None
    return key if isinstance(key, str) else None
