"""NAS-Bench-201: 5 candidate ops on the 6 edges of a 4-node cell, 15,625 cells, placed in the
benchmark's CIFAR macro network (input 1x3x32x32).

Encodings, all of every index (isomorphic cells are kept; ``unique_key`` groups them):

- index 0..15624: NAS-Bench-201's own index, the one its API, HW-NAS-Bench and HELP use: the
  benchmark's generation script lists every cell (``CellStructure.gen_all``) and shuffles the
  list once with ``random.seed(88)``; this module repeats that shuffle (tests check all 15,625
  cells against the benchmark's own table);
- enum index 0..15624 (``enum_index``, ``from_enum_index``): the unshuffled ``gen_all`` order,
  the edge ops as base-5 digits, edge 1<-0 most significant, edge 3<-2 least;
- string: the benchmark's ``|nor_conv_3x3~0|+|none~0|skip_connect~1|+|...~0|...~1|...~2|``;
- vector: BRP-NAS/Eagle's arch vector, the 6 op ids in edge order (LatBench's pickle keys).

The network: stem (3x3 conv 16 + BN); three stages of 5 cells with C = 16, 32, 64; between
stages a residual reduction block (ReLU-Conv3x3/2-BN, ReLU-Conv3x3-BN, shortcut AvgPool2x2 +
Conv1x1); then BN, ReLU, global average pool and a 10-way linear classifier. Inside a cell,
``nor_conv_kxk`` is ReLU-Conv-BN, ``avg_pool_3x3`` is a 3x3/1 average pool without counting
padding, ``skip_connect`` is the identity and ``none`` the zero; a node sums its edges.

Two forms of the same network (``GraphForm``):

- ``pruned`` (the default): ops whose result cannot reach the cell output are not exported (they
  change no number a deployed model computes, and TFLite, SNPE and TensorRT prune them too);
  a ``none`` edge is no op, and a cell whose output is cut off from its input outputs
  ``input * 0``;
- ``eager``: every edge is computed whether or not its result is used, ``none`` as ``x * 0``,
  every node the sum of all its edges: the network as NAS-Bench-201's own PyTorch code runs it.
"""

from __future__ import annotations

import functools
import itertools
import random
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import numpy as np

from latlab.graph import GraphBuilder, OpGraph
from latlab.spaces.base import (
    ArchError,
    GraphForm,
    Param,
    SpaceParamError,
    check_params,
    is_integer,
)
from latlab.untrusted import excerpt

__all__ = ["EDGES", "OPS", "Nb201", "Nb201Arch"]

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: (to, from) in the benchmark's edge order.
EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
SIZE = len(OPS) ** len(EDGES)
#: The seed of the benchmark's shuffle (NAS-Bench-201's generation script).
BENCHMARK_SEED = 88
_STRING = re.compile(r"^\|(\w+)~0\|\+\|(\w+)~0\|(\w+)~1\|\+\|(\w+)~0\|(\w+)~1\|(\w+)~2\|$")


@functools.cache
def _benchmark_order() -> tuple[tuple[tuple[int, ...], ...], dict[tuple[int, ...], int]]:
    """The cells in the benchmark's index order, and each cell's index: ``gen_all``'s order
    (itertools.product over the edges, the last edge fastest) shuffled as the benchmark did."""
    cells = list(itertools.product(range(len(OPS)), repeat=len(EDGES)))
    random.Random(BENCHMARK_SEED).shuffle(cells)
    return tuple(cells), {cell: i for i, cell in enumerate(cells)}


@dataclass(frozen=True)
class Nb201Arch:
    ops: tuple[int, ...]  # op id per edge, in EDGES order

    @property
    def index(self) -> int:
        """NAS-Bench-201's own index (its API's, HW-NAS-Bench's and HELP's)."""
        return _benchmark_order()[1][self.ops]

    @property
    def enum_index(self) -> int:
        """The position in the unshuffled ``gen_all`` order (the ops as base-5 digits)."""
        index = 0
        for op in self.ops:
            index = index * len(OPS) + op
        return index

    @property
    def vector(self) -> tuple[int, ...]:
        return self.ops

    @property
    def string(self) -> str:
        names = [OPS[o] for o in self.ops]
        return (
            f"|{names[0]}~0|+|{names[1]}~0|{names[2]}~1|+|{names[3]}~0|{names[4]}~1|{names[5]}~2|"
        )

    def op(self, to: int, frm: int) -> str:
        return OPS[self.ops[EDGES.index((to, frm))]]

    @cached_property
    def live_edges(self) -> frozenset[tuple[int, int]]:
        """Edges whose op contributes to the cell output (not none, fed, and reaching node 3)."""
        fed = {0}
        for to in (1, 2, 3):
            if any(self.op(to, frm) != "none" and frm in fed for frm in range(to)):
                fed.add(to)
        reaches = {3}
        for frm in (2, 1, 0):
            if any(self.op(to, frm) != "none" and to in reaches for to in range(frm + 1, 4)):
                reaches.add(frm)
        return frozenset(
            (to, frm)
            for to, frm in EDGES
            if self.op(to, frm) != "none" and frm in fed and to in reaches
        )

    @property
    def connected(self) -> bool:
        """Whether the cell output depends on its input (341 cells do not)."""
        return any(to == 3 for to, _ in self.live_edges)

    @property
    def unique_key(self) -> str:
        """Equal for cells that compute the same function up to reordering of sums and
        intermediate nodes (dead and none edges dropped): the unique-cell view."""
        exprs: dict[int, str | None] = {0: "x"}
        for to in (1, 2, 3):
            terms = sorted(
                f"{self.op(to, frm)}({exprs[frm]})"
                for frm in range(to)
                if (to, frm) in self.live_edges and exprs[frm] is not None
            )
            exprs[to] = "+".join(terms) if terms else None
        return exprs[3] or "zero"


class Nb201:
    name = "nb201"
    description = "NAS-Bench-201 cells in the benchmark's CIFAR network (1x3x32x32)"
    size = SIZE
    #: The network downsamples 4x; at 512 its largest activation is 64 MB (float32) with the
    #: default channels.
    params: ClassVar[Mapping[str, Param]] = {
        "resolution": Param(4, 512, multiple_of=4),
        "cells_per_stage": Param(1, 16),
        "n_classes": Param(1, 10_000),
    }

    def __init__(
        self,
        resolution: int = 32,
        channels: tuple[int, int, int] = (16, 32, 64),
        cells_per_stage: int = 5,
        n_classes: int = 10,
    ) -> None:
        check_params(
            self.name,
            self.params,
            {"resolution": resolution, "cells_per_stage": cells_per_stage, "n_classes": n_classes},
        )
        if len(channels) != 3 or not all(1 <= c <= 1024 for c in channels):
            raise SpaceParamError(f"nb201 channels are 3 widths in 1..1024, got {channels}")
        self.resolution = resolution
        self.channels = channels
        self.cells_per_stage = cells_per_stage
        self.n_classes = n_classes

    # ------------------------------------------------------------------ encodings

    def from_index(self, index: int) -> Nb201Arch:
        """The cell at NAS-Bench-201's own index."""
        if not 0 <= index < SIZE:
            raise ArchError(f"NAS-Bench-201 index {index} is out of range 0..{SIZE - 1}")
        return Nb201Arch(_benchmark_order()[0][index])

    def from_enum_index(self, index: int) -> Nb201Arch:
        """The cell at ``index`` of the unshuffled enumeration (base-5 digits)."""
        if not 0 <= index < SIZE:
            raise ArchError(f"NAS-Bench-201 enum index {index} is out of range 0..{SIZE - 1}")
        digits = []
        for _ in EDGES:
            index, digit = divmod(index, len(OPS))
            digits.append(digit)
        return Nb201Arch(tuple(reversed(digits)))

    def from_string(self, text: str) -> Nb201Arch:
        match = _STRING.match(text.strip())
        if match is None:
            raise ArchError(
                f"not a NAS-Bench-201 arch string: {excerpt(text)} (expected |op~0|+|op~0|op~1|+|op~0|op~1|op~2|)"
            )
        try:
            return Nb201Arch(tuple(OPS.index(name) for name in match.groups()))
        except ValueError:
            raise ArchError(f"unknown op in {excerpt(text)}; ops are {', '.join(OPS)}") from None

    def from_vector(self, vector: tuple[int, ...] | list[int]) -> Nb201Arch:
        ops = tuple(int(v) for v in vector)
        if len(ops) != len(EDGES) or not all(0 <= o < len(OPS) for o in ops):
            raise ArchError(f"a NAS-Bench-201 arch vector is 6 op ids in 0..4, got {list(vector)}")
        return Nb201Arch(ops)

    def parse(self, arch: str | int) -> Nb201Arch:
        """An index, an arch string, or a vector written ``0,1,2,3,4,0``."""
        if isinstance(arch, int):
            return self.from_index(arch)
        text = arch.strip()
        if is_integer(text.lstrip("-")):
            return self.from_index(int(text))
        if text.startswith("|"):
            return self.from_string(text)
        parts = text.strip("()[]").split(",")
        if len(parts) == len(EDGES) and all(is_integer(p.strip()) for p in parts):
            return self.from_vector([int(p) for p in parts])
        raise ArchError(
            f"not a NAS-Bench-201 arch: {excerpt(arch)} (give an index, a string or a vector)"
        )

    def encode(self, arch: Nb201Arch) -> str:
        return arch.string

    def encoding(self, arch: Nb201Arch) -> np.ndarray:
        """30 floats: the one-hot op of each edge (6 x 5, edge-major)."""
        return self._onehot(arch, frozenset(EDGES))

    def live_encoding(self, arch: Nb201Arch) -> np.ndarray:
        """The one-hot of the live edges only (dead and none edges all zero)."""
        return self._onehot(arch, arch.live_edges)

    @staticmethod
    def _onehot(arch: Nb201Arch, edges: frozenset[tuple[int, int]]) -> np.ndarray:
        row = np.zeros(len(EDGES) * len(OPS), dtype=np.float64)
        for e, (edge, op) in enumerate(zip(EDGES, arch.ops, strict=True)):
            if edge in edges:
                row[e * len(OPS) + op] = 1.0
        return row

    def all(self) -> Iterator[Nb201Arch]:
        """Every cell, in index order."""
        return (Nb201Arch(cell) for cell in _benchmark_order()[0])

    def sample(self, n: int, seed: int) -> list[Nb201Arch]:
        """``n`` distinct archs drawn uniformly with ``seed`` (connected cells only)."""
        connected = [arch for arch in self.all() if arch.connected]
        if not 0 < n <= len(connected):
            raise ArchError(
                f"can sample 1..{len(connected)} connected NAS-Bench-201 archs, not {n}"
            )
        chosen = np.random.default_rng(seed).choice(len(connected), size=n, replace=False)
        return [connected[int(i)] for i in chosen]

    def example(self) -> Nb201Arch:
        return self.from_string(
            "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
        )

    # ------------------------------------------------------------------ the network

    def graph(self, arch: Nb201Arch, form: GraphForm = GraphForm.pruned) -> OpGraph:
        name = f"nb201-{arch.index}" if form is GraphForm.pruned else f"nb201-{form}-{arch.index}"
        b = GraphBuilder(name, (1, 3, self.resolution, self.resolution))
        x = b.batch_norm("stem.bn", b.conv("stem.conv", b.input, self.channels[0], 3))
        for stage, c in enumerate(self.channels):
            if stage:
                x = self._reduction(b, f"s{stage}.reduce", x, c)
            for i in range(self.cells_per_stage):
                x = self._cell(b, f"s{stage}.c{i}", x, arch, form)
        x = b.relu("head.relu", b.batch_norm("head.bn", x))
        x = b.flatten("head.flatten", b.global_avg_pool("head.pool", x))
        return b.build(b.linear("head.fc", x, self.n_classes))

    def predictor_graph(self, arch: Nb201Arch) -> OpGraph:
        """One cell, at the first stage's shape, in the eager form (every op of the arch, ``none``
        as ``x * 0``): what a latency predictor reads, as BRP-NAS does (every cell of the network
        is this cell; stem, reductions and head are the same for every arch). The features mark
        which ops a pruning runtime would drop (predictors.features), so a predictor learns from
        the device's data whether they cost time."""
        c = self.channels[0]
        b = GraphBuilder(f"nb201-cell-{arch.index}", (1, c, self.resolution, self.resolution))
        return b.build(self._cell(b, "cell", b.input, arch, GraphForm.eager))

    def _relu_conv_bn(
        self, b: GraphBuilder, name: str, x: str, c: int, k: int, stride: int = 1
    ) -> str:
        return b.batch_norm(
            f"{name}.bn", b.conv(f"{name}.conv", b.relu(f"{name}.relu", x), c, k, stride)
        )

    def _reduction(self, b: GraphBuilder, name: str, x: str, c: int) -> str:
        y = self._relu_conv_bn(b, f"{name}.a", x, c, 3, stride=2)
        y = self._relu_conv_bn(b, f"{name}.b", y, c, 3)
        shortcut = b.avg_pool(f"{name}.down.pool", x, 2, 2, 0, count_include_pad=True)
        shortcut = b.conv(f"{name}.down.conv", shortcut, c, 1)
        return b.add(f"{name}.add", shortcut, y)

    def _cell(self, b: GraphBuilder, name: str, x: str, arch: Nb201Arch, form: GraphForm) -> str:
        c = b.shape(x)[1]
        nodes: dict[int, str | None] = {0: x}
        eager = form is GraphForm.eager
        for to in (1, 2, 3):
            terms = []
            for frm in range(to):
                src = nodes[frm]
                if src is None or not (eager or (to, frm) in arch.live_edges):
                    continue
                op, edge = arch.op(to, frm), f"{name}.e{to}{frm}"
                if op == "none":
                    terms.append(b.zeros_like(f"{edge}.zero", src))
                elif op == "skip_connect":
                    terms.append(src)
                elif op == "nor_conv_1x1":
                    terms.append(self._relu_conv_bn(b, edge, src, c, 1))
                elif op == "nor_conv_3x3":
                    terms.append(self._relu_conv_bn(b, edge, src, c, 3))
                elif op == "avg_pool_3x3":
                    terms.append(b.avg_pool(f"{edge}.pool", src, 3, 1, 1, count_include_pad=False))
            total = terms[0] if terms else None
            for k, term in enumerate(terms[1:], start=1):
                total = b.add(f"{name}.n{to}.add{k}", total, term)  # type: ignore[arg-type]
            nodes[to] = total
        out = nodes[3]
        return out if out is not None else b.zeros_like(f"{name}.zero", x)
