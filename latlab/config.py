"""The user-side settings (``LATLAB_SERVER_URL``, ``LATLAB_API_KEY``) of the CLI and SDK."""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ClientSettings"]


class ClientSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LATLAB_", extra="ignore")

    server_url: str = "http://127.0.0.1:8000"
    api_key: SecretStr = SecretStr("")
