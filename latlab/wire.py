"""The two base classes of every wire model: what the server accepts and what it answers.

A body the server accepts forbids unknown fields (a typo in a request is a 422, not a silently
ignored option), any NUL character in its text (no database stores it; PostgreSQL refuses
it in text and JSON), nesting deeper than ``MAX_DEPTH`` and integers beyond ±2^53
(``latlab.untrusted.check_value``; a field stored in a 32-bit column bounds itself further).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from latlab.untrusted import INT32_MAX, JSON_INT_MAX, check_value

__all__ = ["Count", "In", "JsonInt", "Out"]

#: An integer every JSON reader keeps exactly: one stored inside a JSON column, an arch index.
JsonInt = Annotated[int, Field(ge=-JSON_INT_MAX, le=JSON_INT_MAX)]
#: A count stored in a 32-bit column.
Count = Annotated[int, Field(ge=0, le=INT32_MAX)]


class In(BaseModel):
    """A body the server accepts."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _bounded(cls, data: Any) -> Any:
        check_value(data)
        return data


class Out(BaseModel):
    """A body the server answers (read from ORM rows too)."""

    model_config = ConfigDict(from_attributes=True)
