"""The FBNet layer-wise space, as HW-NAS-Bench and HELP (NeurIPS'21) publish latencies for it.

The CIFAR-100 network of HW-NAS-Bench: a 3x3 stem conv (16 channels, stride 1), then 22
searchable layers in seven stages (channels 16, 24, 32, 64, 112, 184, 352; 1, 4, 4, 4, 4, 4, 1
layers; the first layer of a stage has the stage's stride 1, 1, 2, 2, 1, 2, 1), a 1x1 conv to
1504 channels, global pool and a 100-way classifier. Each layer is one of nine ops, in the order
the published data indexes them (op index 0-8)::

    k3_e1  k3_e1_g2  k3_e3  k3_e6  k5_e1  k5_e1_g2  k5_e3  k5_e6  skip

``kK_eE[_gG]`` is FBNet's ConvBlock: a 1x1 conv to E x the input channels (G groups) + BN +
ReLU, a KxK depthwise conv (the layer's stride) + BN + ReLU, a 1x1 conv to the output channels
(G groups) + BN, plus the input where stride is 1 and the channels match. The grouped blocks'
channel shuffle is left out (a memory permutation the published lookup tables fold into the
block; here the two grouped convs are the block). ``skip`` is the identity where shapes allow,
else a 1x1 conv (the stride) + BN: the first layer of stages 2, 3, 4, 5, 6 and 7 changes the
channels.

Encodings: the published forms, a list of 22 op indices (``[0, 3, 8, ...]``) or op names
(``["k3_e1", "k3_e6", "skip", ...]``), as JSON or as Python writes a list, or without the
brackets (``0,3,8,...``: a LatBench-style pickle's key); a string of 22 names joined by ``-``
(the canonical form); an integer index, the layers as base-9 digits, layer 0
most significant (9^22 archs). The input resolution (default 32) and the classes (default 100)
are parameters of the space.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from latlab.graph import GraphBuilder, OpGraph
from latlab.spaces.base import ArchError, GraphForm, Param, check_params, is_integer
from latlab.untrusted import excerpt

__all__ = ["LAYERS", "OPS", "Fbnet", "FbnetArch"]

#: The ops in the published data's order (op index 0-8).
OPS = ("k3_e1", "k3_e1_g2", "k3_e3", "k3_e6", "k5_e1", "k5_e1_g2", "k5_e3", "k5_e6", "skip")
SKIP = OPS.index("skip")
_INDEX_OF = {name: i for i, name in enumerate(OPS)}
#: (kernel, expansion, groups) of ops 0-7.
BLOCKS = ((3, 1, 1), (3, 1, 2), (3, 3, 1), (3, 6, 1), (5, 1, 1), (5, 1, 2), (5, 3, 1), (5, 6, 1))
#: (channels, layers, stride of the first layer) of the CIFAR-100 network.
STAGES = ((16, 1, 1), (24, 4, 1), (32, 4, 2), (64, 4, 2), (112, 4, 1), (184, 4, 2), (352, 1, 1))
LAYERS = sum(n for _, n, _ in STAGES)
#: A layer's node-name prefix (``s2.l3``) -> its index 0-21.
_LAYER_OF = {
    f"s{s}.l{i}": layer
    for layer, (s, i) in enumerate((s, i) for s, (_, n, _) in enumerate(STAGES) for i in range(n))
}
STEM_CHANNELS = 16
HEAD_CHANNELS = 1504


@dataclass(frozen=True)
class FbnetArch:
    #: Per layer: an op index 0-8 (``OPS``).
    ops: tuple[int, ...]

    @property
    def index(self) -> int:
        index = 0
        for op in self.ops:
            index = index * len(OPS) + op
        return index

    @property
    def string(self) -> str:
        return "-".join(OPS[op] for op in self.ops)

    @property
    def vector(self) -> tuple[int, ...]:
        return self.ops

    @property
    def names(self) -> list[str]:
        """The published form: the 22 op names."""
        return [OPS[op] for op in self.ops]


class Fbnet:
    name = "fbnet"
    description = (
        "FBNet layer-wise space (HW-NAS-Bench/HELP CIFAR-100 network): 22 layers, "
        "k3/k5 x e1/e3/e6, grouped e1, skip"
    )
    size = len(OPS) ** LAYERS
    #: The network downsamples 8x; at 512 its largest activation is 151 MB (float32, a k3_e6
    #: layer of the second stage), at 10,000 classes its classifier 60 MB.
    params: ClassVar[Mapping[str, Param]] = {
        "resolution": Param(32, 512, multiple_of=8),
        "n_classes": Param(1, 10_000),
    }

    def __init__(self, resolution: int = 32, n_classes: int = 100) -> None:
        check_params(self.name, self.params, {"resolution": resolution, "n_classes": n_classes})
        self.resolution = resolution
        self.n_classes = n_classes

    def segments(self, arch: FbnetArch) -> tuple[tuple[Hashable, Hashable], ...]:
        """The stem and head, then each layer and its op."""
        return (("fixed", None), *enumerate(arch.ops))

    def segment_of(self, arch: FbnetArch, node: str) -> Hashable:
        return _LAYER_OF.get(".".join(node.split(".")[:2]), "fixed")

    def covering(self) -> list[FbnetArch]:
        """One arch per op, every layer that op."""
        return [FbnetArch((op,) * LAYERS) for op in range(len(OPS))]

    def segment_keys(self) -> list[tuple[Hashable, Hashable]]:
        """The stem and head (0), then layer by layer each op: 1 + layer * 9 + op."""
        return [
            ("fixed", None),
            *((layer, op) for layer in range(LAYERS) for op in range(len(OPS))),
        ]

    def segment_numbers(self, items: Sequence[str | int]) -> tuple[np.ndarray, np.ndarray]:
        read = np.zeros(len(items), dtype=bool)
        rows: list[list[int | None]] = []
        for i, item in enumerate(items):  # the canonical form: 22 op names joined by "-"
            if type(item) is str:
                ops = list(map(_INDEX_OF.get, item.split("-")))
                if len(ops) == LAYERS and None not in ops:
                    read[i] = True
                    rows.append(ops)
        numbers = np.full((len(items), 1 + LAYERS), -1, dtype=np.int64)
        if rows:
            numbers[read, 0] = 0
            numbers[read, 1:] = 1 + np.arange(LAYERS) * len(OPS) + np.array(rows, dtype=np.int64)
        return numbers, read

    def predictor_graph(self, arch: FbnetArch) -> OpGraph:
        """The whole network: its layers differ in shape along the network."""
        return self.graph(arch)

    def _check(self, ops: Sequence[int]) -> FbnetArch:
        if len(ops) != LAYERS:
            raise ArchError(f"an {self.name} arch has {LAYERS} layers, got {len(ops)}")
        for i, op in enumerate(ops):
            if isinstance(op, bool) or not isinstance(op, int) or not 0 <= op < len(OPS):
                raise ArchError(f"layer {i}: op {excerpt(str(op))} is not an index 0-{SKIP}")
        return FbnetArch(tuple(ops))

    def from_index(self, index: int) -> FbnetArch:
        if not 0 <= index < self.size:
            raise ArchError(f"{self.name} index {index} is out of range 0..{self.size - 1}")
        digits = []
        for _ in range(LAYERS):
            index, digit = divmod(index, len(OPS))
            digits.append(digit)
        return FbnetArch(tuple(reversed(digits)))

    def from_ops(self, ops: Sequence[int | str]) -> FbnetArch:
        """The published list form: op indices or op names, one per layer."""
        return self._check([self._op(op) for op in ops])

    @staticmethod
    def _op(op: object) -> int:
        if isinstance(op, str):
            if op not in OPS:
                raise ArchError(f"unknown op {excerpt(op)}; ops are {', '.join(OPS)}")
            return OPS.index(op)
        if isinstance(op, int) and not isinstance(op, bool):
            return op
        raise ArchError(f"an op is a name or an index 0-{SKIP}, got {excerpt(repr(op))}")

    def from_string(self, text: str) -> FbnetArch:
        text = text.strip()
        if text.startswith("["):  # the published list, as JSON or as Python prints it
            try:
                items = json.loads(text.replace("'", '"'))
            except ValueError:
                raise ArchError(f"not a list of ops: {excerpt(text)}") from None
            if not isinstance(items, list):
                raise ArchError(f"not a list of ops: {excerpt(text)}")
            return self.from_ops(items)
        if "," in text:  # the list without brackets (a LatBench pickle's key, comma-joined)
            return self.from_ops(
                [int(t) if is_integer(t.strip()) else t.strip() for t in text.split(",")]
            )
        names = text.split("-")
        ops = tuple(map(_INDEX_OF.get, names))
        if len(ops) == LAYERS and None not in ops:  # the canonical form: a search job's batch
            return FbnetArch(ops)  # type: ignore[arg-type]
        return self.from_ops(names)  # says what is wrong

    def parse(self, arch: str | int) -> FbnetArch:
        if isinstance(arch, int):
            return self.from_index(arch)
        text = arch.strip()
        return self.from_index(int(text)) if is_integer(text) else self.from_string(text)

    def encode(self, arch: FbnetArch) -> str:
        return arch.string

    def encoding(self, arch: FbnetArch) -> np.ndarray:
        """22 x 9 floats: the one-hot op of each layer (``OPS`` order); no op of this space is
        ever dead."""
        row = np.zeros(LAYERS * len(OPS), dtype=np.float64)
        row[np.arange(LAYERS) * len(OPS) + np.asarray(arch.ops)] = 1.0
        return row

    def live_encoding(self, arch: FbnetArch) -> np.ndarray:
        """Empty: no op of this space is ever dead."""
        return np.zeros(0)

    def sample(self, n: int, seed: int) -> list[FbnetArch]:
        rng = np.random.default_rng(seed)
        seen: dict[FbnetArch, None] = {}
        while len(seen) < n:
            ops = tuple(int(op) for op in rng.integers(0, len(OPS), LAYERS))
            seen.setdefault(FbnetArch(ops), None)
        return list(seen)

    def example(self) -> FbnetArch:
        return FbnetArch((OPS.index("k3_e6"),) * LAYERS)

    def graph(self, arch: FbnetArch, form: GraphForm = GraphForm.pruned) -> OpGraph:
        """The network; both forms are the same graph (a skip is the identity or a conv, never
        a dead op)."""
        b = GraphBuilder(
            f"fbnet-{self.resolution}-{arch.index}", (1, 3, self.resolution, self.resolution)
        )
        x = b.relu("stem.act", b.batch_norm("stem.bn", b.conv("stem.conv", b.input, 16, 3)))
        layer = 0
        for s, (c, n, stride) in enumerate(STAGES):
            for i in range(n):
                op = arch.ops[layer]
                name, step = f"s{s}.l{i}", stride if i == 0 else 1
                if op == SKIP:
                    x = _skip(b, name, x, c, step)
                else:
                    x = _conv_block(b, name, x, c, *BLOCKS[op], step)
                layer += 1
        x = b.relu("head.act", b.batch_norm("head.bn", b.conv("head.conv", x, HEAD_CHANNELS, 1)))
        x = b.flatten("head.flatten", b.global_avg_pool("head.pool", x))
        return b.build(b.linear("head.fc", x, self.n_classes))


def _conv_block(
    b: GraphBuilder, name: str, x: str, c_out: int, k: int, e: int, groups: int, stride: int
) -> str:
    c_in = b.shape(x)[1]
    mid = c_in * e
    h = b.relu(
        f"{name}.pw.act",
        b.batch_norm(f"{name}.pw.bn", b.conv(f"{name}.pw", x, mid, 1, groups=groups)),
    )
    h = b.relu(
        f"{name}.dw.act",
        b.batch_norm(f"{name}.dw.bn", b.conv(f"{name}.dw", h, mid, k, stride, groups=mid)),
    )
    h = b.batch_norm(f"{name}.project.bn", b.conv(f"{name}.project", h, c_out, 1, groups=groups))
    if stride == 1 and c_in == c_out:
        h = b.add(f"{name}.add", x, h)
    return h


def _skip(b: GraphBuilder, name: str, x: str, c_out: int, stride: int) -> str:
    if stride == 1 and b.shape(x)[1] == c_out:
        return x
    return b.batch_norm(f"{name}.skip.bn", b.conv(f"{name}.skip", x, c_out, 1, stride))
