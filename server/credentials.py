"""First-run credentials for ``latlab server``: generated once, kept readable by the owner only.

Configured keys (``LATLAB_API_KEYS``, ``LATLAB_ENROLL_KEY``) always win; a key left unset is
taken from ``<data_dir>/credentials.json``, which is created with fresh random keys if absent.
"""

from __future__ import annotations

import json
import os
import secrets
import sys

from pydantic import SecretStr

from latlab.server.config import Settings

__all__ = ["ensure_credentials"]


def ensure_credentials(settings: Settings) -> Settings:
    if settings.api_keys and settings.enroll_key.get_secret_value():
        return settings
    path = settings.data_dir / "credentials.json"
    if path.is_file():
        stored = json.loads(path.read_text())
    else:
        stored = {"api_key": secrets.token_urlsafe(24), "enroll_key": secrets.token_urlsafe(24)}
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(stored, f, indent=2)
        print(f"latlab: generated an API key and an enrollment key in {path}", file=sys.stderr)
    update: dict[str, object] = {}
    if not settings.api_keys:
        update["api_keys"] = [SecretStr(stored["api_key"])]
    if not settings.enroll_key.get_secret_value():
        update["enroll_key"] = SecretStr(stored["enroll_key"])
    return settings.model_copy(update=update)
