"""The two base classes of every wire model: what the server accepts and what it answers.

A body the server accepts forbids unknown fields (a typo in a request is a 422, not a silently
ignored option) and any NUL character in its text (no database stores it; PostgreSQL refuses
it in text and JSON).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

__all__ = ["In", "Out", "without_nul"]


def without_nul(value: Any, where: str = "body") -> None:
    """``ValueError`` if any text in ``value`` (keys included) holds a NUL character."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError(f"{where}: text may not contain NUL characters")
    elif isinstance(value, dict):
        for key, item in value.items():
            without_nul(key, where)
            without_nul(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for item in value:
            without_nul(item, where)


class In(BaseModel):
    """A body the server accepts."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        without_nul(data)
        return data


class Out(BaseModel):
    """A body the server answers (read from ORM rows too)."""

    model_config = ConfigDict(from_attributes=True)
