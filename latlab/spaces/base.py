"""What every search space offers: encodings both ways, a sampler, and its OpGraph."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Protocol, TypeVar

from latlab.errors import LatlabError
from latlab.graph import OpGraph

__all__ = ["ArchError", "SearchSpace", "UnknownSpace"]


class ArchError(LatlabError):
    """An architecture that is not in the space: a malformed string, an out-of-range index."""


class UnknownSpace(LatlabError):
    pass


A = TypeVar("A", bound=Hashable)


class SearchSpace(Protocol[A]):
    name: str
    description: str
    #: Number of architectures (indices run 0..size-1).
    size: int

    def parse(self, arch: str | int) -> A:
        """An index or any of the space's string forms; ``ArchError`` if it is not one."""
        ...

    def from_index(self, index: int) -> A: ...

    def encode(self, arch: A) -> str:
        """The canonical string form."""
        ...

    def sample(self, n: int, seed: int) -> list[A]: ...

    def example(self) -> A: ...

    def graph(self, arch: A) -> OpGraph: ...

    def predictor_graph(self, arch: A) -> OpGraph:
        """What a learned predictor reads: the smallest graph that tells archs apart (a cell,
        where every cell of the network is the same), or the whole network."""
        ...
