"""Search spaces, by name: an explicit registry."""

from __future__ import annotations

from typing import Any

from latlab.spaces.base import ArchError, GraphForm, SearchSpace, UnknownSpace
from latlab.spaces.nb201 import Nb201
from latlab.spaces.proxyless import Proxyless
from latlab.untrusted import excerpt

__all__ = ["SPACES", "ArchError", "GraphForm", "SearchSpace", "UnknownSpace", "get_space"]

SPACES: dict[str, type[Any]] = {
    Nb201.name: Nb201,
    Proxyless.name: Proxyless,
}


def get_space(name: str, **params: Any) -> SearchSpace[Any]:
    """The space called ``name``, built with its parameters (``resolution=160``)."""
    if name not in SPACES:
        raise UnknownSpace(f"unknown search space {excerpt(name)}; known: {', '.join(SPACES)}")
    try:
        space: SearchSpace[Any] = SPACES[name](**params)
    except TypeError as exc:
        raise UnknownSpace(f"bad parameters for space {excerpt(name)}: {exc}") from None
    return space
