"""The dashboard's sign-in: a user API key, given once on the sign-in form, becomes a cookie
that holds no key.

The cookie is ``<key id>.<expiry>.<signature>``: the key id is a hash of the key (which key
signed, not the key), the expiry a Unix time, the signature an HMAC of the expiry keyed by a
hash of the key. Checking one needs the key itself, so any replica with the same settings
accepts it, and taking a key out of the settings ends every sign-in made with it. The scope
is the key's scope *now* (a read-only key can never act). The cookie is HttpOnly (no script
reads it), SameSite=Strict (no other site's page sends it) and Secure over HTTPS, and lasts
``LATLAB_DASHBOARD_SESSION_S`` (an hour by default)."""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

from pydantic import SecretStr

from latlab.server.config import Settings
from latlab.server.deps import Scope

__all__ = ["COOKIE", "Viewer", "issue", "verify"]

COOKIE = "latlab_session"


@dataclass(frozen=True)
class Viewer:
    """Who is looking: the scope of the key they signed in with."""

    scope: Scope

    @property
    def can_write(self) -> bool:
        return self.scope == "write"


def _key_id(key: str) -> str:
    return hashlib.sha256(b"latlab-dashboard-id:" + key.encode()).hexdigest()[:16]


def _signature(key: str, expires: int) -> str:
    secret = hashlib.sha256(b"latlab-dashboard-mac:" + key.encode()).digest()
    return hmac.new(secret, str(expires).encode(), hashlib.sha256).hexdigest()


def issue(settings: Settings, key: str, now: float | None = None) -> str:
    """The cookie value for a user API key (checked by the caller with ``deps.key_scope``)."""
    expires = int((time.time() if now is None else now) + settings.dashboard_session_s)
    return f"{_key_id(key)}.{expires}.{_signature(key, expires)}"


def verify(settings: Settings, cookie: str | None, now: float | None = None) -> Viewer | None:
    """The viewer a cookie signs in, or None: missing, malformed, expired, or signed by a key
    the settings no longer hold."""
    if not cookie or len(cookie) > 200:
        return None
    parts = cookie.split(".")
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    key_id, expiry, signature = parts
    if int(expiry) <= (time.time() if now is None else now):
        return None
    scopes: list[tuple[Scope, list[SecretStr]]] = [
        ("write", settings.api_keys),
        ("read", settings.read_api_keys),
    ]
    for scope, keys in scopes:
        for secret in keys:
            key = secret.get_secret_value()
            if hmac.compare_digest(_key_id(key), key_id) and hmac.compare_digest(
                _signature(key, int(expiry)), signature
            ):
                return Viewer(scope)
    return None
