"""Search spaces, by name: an explicit registry."""

from __future__ import annotations

from typing import Any

from latlab.spaces.base import (
    ArchError,
    GraphForm,
    Param,
    SearchSpace,
    SpaceParamError,
    UnknownSpace,
    check_params,
)
from latlab.spaces.fbnet import Fbnet
from latlab.spaces.nb201 import Nb201
from latlab.spaces.ofa import Ofa
from latlab.spaces.proxyless import Proxyless
from latlab.untrusted import excerpt

__all__ = [
    "SPACES",
    "ArchError",
    "GraphForm",
    "Param",
    "SearchSpace",
    "SpaceParamError",
    "UnknownSpace",
    "get_space",
]

SPACES: dict[str, type[Any]] = {
    Nb201.name: Nb201,
    Proxyless.name: Proxyless,
    Fbnet.name: Fbnet,
    Ofa.name: Ofa,
}


def get_space(name: str, **params: Any) -> SearchSpace[Any]:
    """The space called ``name``, built with its parameters (``resolution=160``), each one the
    space declares and within its bounds (``SpaceParamError`` otherwise)."""
    if name not in SPACES:
        raise UnknownSpace(f"unknown search space {excerpt(name)}; known: {', '.join(SPACES)}")
    cls = SPACES[name]
    check_params(name, cls.params, params)
    space: SearchSpace[Any] = cls(**params)
    return space
