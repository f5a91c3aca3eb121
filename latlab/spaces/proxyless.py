"""A MobileNetV2 / ProxylessNAS-style layer-wise space.

The ProxylessNAS mobile backbone: a 3x3/2 stem conv (32), a fixed MBConv (expansion 1, 3x3, 16),
then 21 searchable MBConv blocks in six stages (channels 24, 40, 80, 96, 192, 320; 4, 4, 4, 4, 4,
1 blocks; strides 2, 2, 2, 1, 2, 1), a 1x1 conv to 1280, global pool and a 1000-way classifier.
Each searchable block picks a kernel (3, 5, 7) and an expansion (3, 4, 6); every block but the
first of a stage may instead be skipped. An MBConv is 1x1 expand + BN + ReLU6, kxk depthwise +
BN + ReLU6, 1x1 project + BN, plus the input when stride is 1 and channels match.

Encodings: a string of 21 tokens ``k3e6-k5e4-skip-...``; an integer index, the blocks as
mixed-radix digits (9 choices for a stage's first block, 10 for the others), block 0 most
significant. The input resolution (default 224) is a parameter of the space.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from math import prod
from typing import ClassVar

import numpy as np

from latlab.graph import GraphBuilder, OpGraph
from latlab.spaces.base import ArchError, GraphForm, Param, check_params, is_integer
from latlab.untrusted import excerpt

__all__ = ["CHOICES", "Proxyless", "ProxylessArch"]

#: (kernel, expansion) of choice 1..9; choice 0 is "skip".
CHOICES = tuple((k, e) for k in (3, 5, 7) for e in (3, 4, 6))
#: (channels, blocks, stride of the first block)
STAGES = ((24, 4, 2), (40, 4, 2), (80, 4, 2), (96, 4, 1), (192, 4, 2), (320, 1, 1))
FIRST_OF_STAGE = tuple(i == 0 for _, n, _ in STAGES for i in range(n))
RADIX = tuple(len(CHOICES) if first else len(CHOICES) + 1 for first in FIRST_OF_STAGE)
#: A block's node-name prefix (``s2.b3``) -> its index 0-20.
_BLOCK_OF = {
    f"s{s}.b{i}": block
    for block, (s, i) in enumerate((s, i) for s, (_, n, _) in enumerate(STAGES) for i in range(n))
}


def _token(choice: int) -> str:
    if choice == 0:
        return "skip"
    k, e = CHOICES[choice - 1]
    return f"k{k}e{e}"


_CHOICE_OF = {_token(c): c for c in range(len(CHOICES) + 1)}


@dataclass(frozen=True)
class ProxylessArch:
    #: Per block: 0 skip, 1..9 an entry of CHOICES.
    choices: tuple[int, ...]

    @property
    def index(self) -> int:
        index = 0
        for choice, radix, first in zip(self.choices, RADIX, FIRST_OF_STAGE, strict=True):
            index = index * radix + (choice - 1 if first else choice)
        return index

    @property
    def string(self) -> str:
        return "-".join(_token(c) for c in self.choices)

    @property
    def vector(self) -> tuple[int, ...]:
        return self.choices


class Proxyless:
    name = "proxyless"
    description = "MobileNetV2/ProxylessNAS layer-wise space: kernel 3/5/7, expansion 3/4/6, skips"
    size = prod(RADIX)
    #: The network downsamples 32x; at 512 its largest activation is 25 MB (float32), at 10,000
    #: classes its classifier 51 MB.
    params: ClassVar[Mapping[str, Param]] = {
        "resolution": Param(32, 512, multiple_of=32),
        "n_classes": Param(1, 10_000),
    }

    def __init__(self, resolution: int = 224, n_classes: int = 1000) -> None:
        check_params(self.name, self.params, {"resolution": resolution, "n_classes": n_classes})
        self.resolution = resolution
        self.n_classes = n_classes

    def segments(self, arch: ProxylessArch) -> tuple[tuple[Hashable, Hashable], ...]:
        """The stem, fixed first block and head, then each searchable block and its choice."""
        return (("fixed", None), *enumerate(arch.choices))

    def segment_of(self, arch: ProxylessArch, node: str) -> Hashable:
        return _BLOCK_OF.get(".".join(node.split(".")[:2]), "fixed")

    def covering(self) -> list[ProxylessArch]:
        """One arch per choice, every block that choice where it is allowed (a stage's first
        block, never skipped, takes choice 1 in the skip arch)."""
        return [
            ProxylessArch(tuple(1 if first and c == 0 else c for first in FIRST_OF_STAGE))
            for c in range(len(CHOICES) + 1)
        ]

    def segment_keys(self) -> list[tuple[Hashable, Hashable]]:
        """The fixed part (0), then block by block each choice (0 skip): 1 + block * 10 +
        choice (a stage's first block's skip is numbered too, and never met)."""
        blocks, choices = len(RADIX), len(CHOICES) + 1
        return [("fixed", None), *((b, c) for b in range(blocks) for c in range(choices))]

    def segment_numbers(self, items: Sequence[str | int]) -> tuple[np.ndarray, np.ndarray]:
        read = np.zeros(len(items), dtype=bool)
        rows: list[list[int | None]] = []
        for i, item in enumerate(items):  # the canonical form: 21 blocks joined by "-"
            if type(item) is str:
                choices = list(map(_CHOICE_OF.get, item.split("-")))
                if len(choices) == len(RADIX) and None not in choices:
                    read[i] = True
                    rows.append(choices)
        numbers = np.full((len(items), 1 + len(RADIX)), -1, dtype=np.int64)
        if rows:
            chosen = np.array(rows, dtype=np.int64)
            skipped_first = (chosen[:, np.array(FIRST_OF_STAGE)] == 0).any(axis=1)
            read[np.flatnonzero(read)[skipped_first]] = False  # not an arch: parse says why
            chosen = chosen[~skipped_first]
            numbers[read, 0] = 0
            numbers[read, 1:] = 1 + np.arange(len(RADIX)) * (len(CHOICES) + 1) + chosen
        return numbers, read

    def predictor_graph(self, arch: ProxylessArch) -> OpGraph:
        """The whole network: its blocks differ in shape along the network."""
        return self.graph(arch)

    def _check(self, choices: tuple[int, ...]) -> ProxylessArch:
        if len(choices) != len(RADIX):
            raise ArchError(f"a {self.name} arch has {len(RADIX)} blocks, got {len(choices)}")
        for i, (c, first) in enumerate(zip(choices, FIRST_OF_STAGE, strict=True)):
            if not 0 <= c <= len(CHOICES) or (first and c == 0):
                raise ArchError(
                    f"block {i}: choice {_token(c) if 0 <= c <= 9 else c} is not allowed there"
                )
        return ProxylessArch(choices)

    def from_index(self, index: int) -> ProxylessArch:
        if not 0 <= index < self.size:
            raise ArchError(f"{self.name} index {index} is out of range 0..{self.size - 1}")
        digits = []
        for radix, first in zip(reversed(RADIX), reversed(FIRST_OF_STAGE), strict=True):
            index, digit = divmod(index, radix)
            digits.append(digit + 1 if first else digit)
        return ProxylessArch(tuple(reversed(digits)))

    def from_string(self, text: str) -> ProxylessArch:
        try:
            return self._check(tuple(_CHOICE_OF[t] for t in text.strip().split("-")))
        except KeyError as exc:
            raise ArchError(
                f"unknown block {excerpt(exc.args[0])} in {excerpt(text)}; blocks are k{{3,5,7}}e{{3,4,6}} or skip"
            ) from None

    def parse(self, arch: str | int) -> ProxylessArch:
        if isinstance(arch, int):
            return self.from_index(arch)
        text = arch.strip()
        return self.from_index(int(text)) if is_integer(text) else self.from_string(text)

    def encode(self, arch: ProxylessArch) -> str:
        return arch.string

    def encoding(self, arch: ProxylessArch) -> np.ndarray:
        """21 x 10 floats: the one-hot choice of each block (skip, then CHOICES); no op of
        this space is ever dead."""
        row = np.zeros(len(RADIX) * (len(CHOICES) + 1), dtype=np.float64)
        for block, choice in enumerate(arch.choices):
            row[block * (len(CHOICES) + 1) + choice] = 1.0
        return row

    def live_encoding(self, arch: ProxylessArch) -> np.ndarray:
        """Empty: no op of this space is ever dead."""
        return np.zeros(0)

    def sample(self, n: int, seed: int) -> list[ProxylessArch]:
        rng = np.random.default_rng(seed)
        seen: dict[ProxylessArch, None] = {}
        while len(seen) < n:
            choices = tuple(
                int(rng.integers(1, len(CHOICES) + 1))
                if first
                else int(rng.integers(0, len(CHOICES) + 1))
                for first in FIRST_OF_STAGE
            )
            seen.setdefault(ProxylessArch(choices), None)
        return list(seen)

    def example(self) -> ProxylessArch:
        return self.from_string("-".join(["k3e6"] * len(RADIX)))

    def graph(self, arch: ProxylessArch, form: GraphForm = GraphForm.pruned) -> OpGraph:
        """The network; both forms are the same graph (a skipped block is no op, never a dead
        one)."""
        b = GraphBuilder(
            f"proxyless-{self.resolution}-{arch.index}", (1, 3, self.resolution, self.resolution)
        )
        x = b.relu6("stem.act", b.batch_norm("stem.bn", b.conv("stem.conv", b.input, 32, 3, 2)))
        x = self._mbconv(b, "first", x, 16, 3, 1, 1)
        block = 0
        for s, (c, n, stride) in enumerate(STAGES):
            for i in range(n):
                choice = arch.choices[block]
                if choice:
                    k, e = CHOICES[choice - 1]
                    x = self._mbconv(b, f"s{s}.b{i}", x, c, k, e, stride if i == 0 else 1)
                block += 1
        x = b.relu6("head.act", b.batch_norm("head.bn", b.conv("head.conv", x, 1280, 1)))
        x = b.flatten("head.flatten", b.global_avg_pool("head.pool", x))
        return b.build(b.linear("head.fc", x, self.n_classes))

    @staticmethod
    def _mbconv(b: GraphBuilder, name: str, x: str, c_out: int, k: int, e: int, stride: int) -> str:
        c_in = b.shape(x)[1]
        h = x
        if e != 1:
            h = b.relu6(
                f"{name}.expand.act",
                b.batch_norm(f"{name}.expand.bn", b.conv(f"{name}.expand", h, c_in * e, 1)),
            )
        mid = b.shape(h)[1]
        h = b.relu6(
            f"{name}.dw.act",
            b.batch_norm(f"{name}.dw.bn", b.conv(f"{name}.dw", h, mid, k, stride, groups=mid)),
        )
        h = b.batch_norm(f"{name}.project.bn", b.conv(f"{name}.project", h, c_out, 1))
        if stride == 1 and c_in == c_out:
            h = b.add(f"{name}.add", x, h)
        return h
