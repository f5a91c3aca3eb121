"""Bearer tokens: user API keys, device tokens (stored hashed), the enrollment key."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable

from pydantic import SecretStr

__all__ = ["bearer_token", "hash_token", "key_matches", "new_device_token", "new_lease_token"]

DEVICE_TOKEN_PREFIX = "ldt_"


def new_device_token() -> str:
    return DEVICE_TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_lease_token() -> str:
    return secrets.token_hex(16)


def hash_token(token: str) -> str:
    """sha256 of a high-entropy token: what the database keeps instead of the token."""
    return hashlib.sha256(token.encode()).hexdigest()


def key_matches(presented: str, keys: Iterable[SecretStr]) -> bool:
    """Constant-time comparison against every configured key."""
    found = False
    for key in keys:
        value = key.get_secret_value()
        if value and hmac.compare_digest(presented.encode(), value.encode()):
            found = True
    return found


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
