"""Search spaces, by name: an explicit registry."""

from __future__ import annotations

from typing import Any

from latlab.spaces.base import ArchError, SearchSpace, UnknownSpace
from latlab.spaces.nb201 import Nb201

__all__ = ["SPACES", "ArchError", "SearchSpace", "UnknownSpace", "get_space"]

SPACES: dict[str, type[Any]] = {
    Nb201.name: Nb201,
}


def get_space(name: str) -> SearchSpace[Any]:
    try:
        space: SearchSpace[Any] = SPACES[name]()
        return space
    except KeyError:
        raise UnknownSpace(f"unknown search space {name!r}; known: {', '.join(SPACES)}") from None
