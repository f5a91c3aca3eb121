"""What every search space offers: encodings both ways, a sampler, and its OpGraph."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

import numpy as np

from latlab.errors import LatlabError
from latlab.graph import OpGraph
from latlab.untrusted import excerpt

__all__ = [
    "ArchError",
    "GraphForm",
    "Layerwise",
    "Param",
    "SearchSpace",
    "SpaceParamError",
    "UnknownSpace",
    "check_params",
    "is_integer",
]


class GraphForm(StrEnum):
    """How a space's network is written out: what a runtime is given to run."""

    #: Ops whose result cannot reach the output are left out (what TFLite, SNPE and TensorRT
    #: toolchains do to a graph anyway).
    pruned = "pruned"
    #: Every op of the arch is computed, used or not (the network as a framework's eager code
    #: runs it, e.g. NAS-Bench-201's PyTorch cells: ``none`` is ``x * 0``).
    eager = "eager"


class ArchError(LatlabError):
    """An architecture that is not in the space: a malformed string, an out-of-range index."""


class UnknownSpace(LatlabError):
    pass


class SpaceParamError(LatlabError):
    """A space parameter the space does not have, or a value outside its bounds."""


@dataclass(frozen=True)
class Param:
    """An integer parameter of a space and the values it may take. The bounds keep every
    network the space exports to a size a device can run and a server can store: a request
    naming a value outside them is refused before any background work starts."""

    low: int
    high: int
    multiple_of: int = 1

    def describe(self) -> str:
        step = f", a multiple of {self.multiple_of}" if self.multiple_of > 1 else ""
        return f"{self.low}..{self.high}{step}"

    def check(self, space: str, name: str, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpaceParamError(f"{space} {name} must be an integer, got {type(value).__name__}")
        if not self.low <= value <= self.high or value % self.multiple_of:
            raise SpaceParamError(f"{space} {name} must be {self.describe()}; got {value}")
        return value


def is_integer(text: str) -> bool:
    """Whether ``text`` is a non-negative integer in ASCII digits (``str.isdigit`` also says
    yes to digits ``int`` refuses, such as superscripts)."""
    return text.isascii() and text.isdigit()


def check_params(space: str, params: Mapping[str, Param], values: Mapping[str, Any]) -> None:
    """Every name one of the space's parameters, every value within its bounds."""
    for name, value in values.items():
        if name not in params:
            known = ", ".join(f"{n} ({p.describe()})" for n, p in params.items())
            raise SpaceParamError(
                f"{space} has no parameter {excerpt(name)}; its parameters: {known}"
            )
        params[name].check(space, name, value)


A = TypeVar("A", bound=Hashable)


class SearchSpace(Protocol[A]):
    name: str
    description: str
    #: The integer parameters a request may set (``space_params``), with their bounds.
    params: ClassVar[Mapping[str, Param]]
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

    def encoding(self, arch: A) -> np.ndarray:
        """The arch as a fixed-length one-hot of its choices (for linear models)."""
        ...

    def live_encoding(self, arch: A) -> np.ndarray:
        """The same one-hot for the choices whose op is live (reaches the output from the
        input), all zero for dead ones; empty where no op of the space is ever dead."""
        ...

    def example(self) -> A: ...

    def graph(self, arch: A, form: GraphForm = GraphForm.pruned) -> OpGraph:
        """The network, in ``form`` (the same graph in both where no op is ever dead)."""
        ...

    def predictor_graph(self, arch: A) -> OpGraph:
        """What a learned predictor reads: the smallest graph that tells archs apart (a cell,
        where every cell of the network is the same), or the whole network; every op of the
        arch, dead or not (the features say which)."""
        ...


@runtime_checkable
class Layerwise(Protocol[A]):
    """A space whose network is a fixed part plus one segment per slot (a layer or block),
    each segment's ops depending only on its slot and the choice made there: a kernel-sum model
    (a LUT) answers an arch as the sum of its segments' sums, from arrays, without its graph."""

    def segments(self, arch: A) -> tuple[tuple[Hashable, Hashable], ...]:
        """(slot, choice) for each part the arch's network has, the fixed part included."""
        ...

    def segment_of(self, arch: A, node: str) -> Hashable:
        """The slot a node of the arch's graph (by name) belongs to."""
        ...

    def covering(self) -> list[A]:
        """Archs whose segments together are every (slot, choice) the space has."""
        ...

    def segment_keys(self) -> list[tuple[Hashable, Hashable]]:
        """Every (slot, choice) the space has, numbered by position (``segment_numbers``)."""
        ...

    def segment_numbers(self, items: Sequence[str | int]) -> tuple[np.ndarray, np.ndarray]:
        """A search job's batch in bulk: for each item in the space's canonical string form,
        its segments (in ``segments`` order) as numbers into ``segment_keys``, a row per item
        padded with -1; and which items were read that way (the others, any other form or
        not an arch at all, go through ``parse``)."""
        ...

    def graph(self, arch: A, form: GraphForm = GraphForm.pruned) -> OpGraph: ...

    def encoding(self, arch: A) -> np.ndarray: ...

    def live_encoding(self, arch: A) -> np.ndarray: ...
