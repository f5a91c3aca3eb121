"""Once-for-All's MobileNetV3 space (``ofa_mbv3_d234_e346_k357_w1.0``), as HELP (NeurIPS'21)
publishes latencies for it.

The network at resolution ``r``: a 3x3/2 stem conv (16, h-swish), a fixed MBConv (expansion 1,
3x3, 16, ReLU, identity shortcut), five stages (channels 24, 40, 80, 112, 160; strides 2, 2, 2,
1, 2; ReLU, ReLU, h-swish, h-swish, h-swish; squeeze-excite in stages 2, 4 and 5) of ``d`` = 2,
3 or 4 MBConv blocks each, a 1x1 conv to 960 (h-swish), global pool, a 1x1 conv to 1280
(h-swish, no BN) and a 1000-way classifier. Block ``i`` of the 20 picks a kernel ``ks`` (3, 5,
7) and an expansion ``e`` (3, 4, 6): a 1x1 conv to ``e`` x its input channels + BN + act, a
``ks`` x ``ks`` depthwise conv (the stage's stride in its first block) + BN + act, in SE stages
a squeeze-excite (global pool, 1x1 conv to a quarter of the channels rounded to a multiple of 8
+ ReLU, 1x1 conv back + h-sigmoid, times the features), a 1x1 conv to the stage's channels +
BN, plus the input in every block but a stage's first. A stage of depth ``d`` uses its first
``d`` blocks; the others' ``ks`` and ``e`` do not matter.

Encodings: OFA's own dict, ``{"ks": [20 kernels], "e": [20 expansions], "d": [5 depths],
"r": 224}`` (JSON, or as Python prints it; ``r`` may be a one-element list, other keys such as
``"wid": null`` are ignored); the canonical string ``r224:k3e4-k5e6/k7e3-k3e3-k5e4/...``
(stages separated by ``/``, only the blocks a stage uses); the vector ``r, d x 5, (ks, e) x 20``
comma-joined with 0, 0 for an unused block (a LatBench-style pickle's key); an integer index (the resolution's
position, then each stage's depth and used blocks as mixed-radix digits). Resolutions: 128 to
224 in steps of 4 (OFA's).
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from latlab.graph import GraphBuilder, OpGraph
from latlab.spaces.base import ArchError, GraphForm, Param, check_params, is_integer
from latlab.untrusted import excerpt

__all__ = ["BLOCKS", "DEPTHS", "EXPANSIONS", "KERNELS", "RESOLUTIONS", "Ofa", "OfaArch"]

KERNELS = (3, 5, 7)
EXPANSIONS = (3, 4, 6)
DEPTHS = (2, 3, 4)
RESOLUTIONS = tuple(range(128, 225, 4))
#: (channels, stride, activation, squeeze-excite) per stage; 4 blocks each at most.
STAGES = (
    (24, 2, "relu", False),
    (40, 2, "relu", True),
    (80, 2, "h_swish", False),
    (112, 1, "h_swish", True),
    (160, 2, "h_swish", True),
)
PER_STAGE = max(DEPTHS)
BLOCKS = len(STAGES) * PER_STAGE
CHOICES = tuple((k, e) for k in KERNELS for e in EXPANSIONS)
_BLOCK_OF = {f"k{k}e{e}": (k, e) for k, e in CHOICES}
_CHOICE_OF = {f"k{k}e{e}": c for c, (k, e) in enumerate(CHOICES)}
_RESOLUTION_OF = {f"r{r}": i for i, r in enumerate(RESOLUTIONS)}
#: Archs of one stage: its depth, then each used block's (ks, e).
STAGE_SIZES = tuple(len(CHOICES) ** d for d in DEPTHS)
STAGE_RADIX = sum(STAGE_SIZES)
FINAL_EXPAND = 960
FEATURE_MIX = 1280


def make_divisible(value: float, divisor: int = 8) -> int:
    """The nearest multiple of ``divisor`` at least ``divisor`` and not 10 % below ``value``
    (MobileNet's rounding of channel counts)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


@dataclass(frozen=True)
class OfaArch:
    resolution: int
    depths: tuple[int, ...]
    #: Per stage, the (ks, e) of the blocks it uses.
    blocks: tuple[tuple[tuple[int, int], ...], ...]

    @property
    def index(self) -> int:
        index = RESOLUTIONS.index(self.resolution)
        for stage in self.blocks:
            digit = sum(STAGE_SIZES[: DEPTHS.index(len(stage))])
            within = 0
            for block in stage:
                within = within * len(CHOICES) + CHOICES.index(block)
            index = index * STAGE_RADIX + digit + within
        return index

    @property
    def string(self) -> str:
        stages = "/".join("-".join(f"k{k}e{e}" for k, e in stage) for stage in self.blocks)
        return f"r{self.resolution}:{stages}"

    @property
    def vector(self) -> tuple[int, ...]:
        """``[r, d x 5, (ks, e) x 20]`` with 0 for the blocks a stage does not use."""
        flat: list[int] = [self.resolution, *self.depths]
        for stage in self.blocks:
            for i in range(PER_STAGE):
                flat.extend(stage[i] if i < len(stage) else (0, 0))
        return tuple(flat)

    def published(self) -> dict[str, Any]:
        """OFA's dict; a block a stage does not use repeats the stage's last used one."""
        ks, e = [], []
        for stage in self.blocks:
            for i in range(PER_STAGE):
                k, x = stage[min(i, len(stage) - 1)]
                ks.append(k)
                e.append(x)
        return {"ks": ks, "e": e, "d": list(self.depths), "r": self.resolution}


class Ofa:
    name = "ofa"
    description = (
        "Once-for-All MobileNetV3 space: 5 stages of depth 2-4, kernel 3/5/7 x expansion 3/4/6 "
        "per block, resolution 128-224"
    )
    size = len(RESOLUTIONS) * STAGE_RADIX ** len(STAGES)
    params: ClassVar[Mapping[str, Param]] = {"n_classes": Param(1, 10_000)}

    def __init__(self, n_classes: int = 1000) -> None:
        check_params(self.name, self.params, {"n_classes": n_classes})
        self.n_classes = n_classes

    def segments(self, arch: OfaArch) -> tuple[tuple[Hashable, Hashable], ...]:
        """The stem, fixed first block and head at the arch's resolution, then each block a
        stage uses, by resolution, stage and position, and its (ks, e)."""
        r = arch.resolution
        parts: list[tuple[Hashable, Hashable]] = [(("fixed", r), None)]
        for s, stage in enumerate(arch.blocks):
            for i, block in enumerate(stage):
                parts.append(((r, s, i), block))
        return tuple(parts)

    def segment_of(self, arch: OfaArch, node: str) -> Hashable:
        found = re.match(r"s(\d)\.b(\d)\.", node)
        if found is None:
            return ("fixed", arch.resolution)
        return (arch.resolution, int(found.group(1)), int(found.group(2)))

    def covering(self) -> list[OfaArch]:
        """Per resolution and (ks, e): every stage 4 blocks of it."""
        return [
            OfaArch(r, (PER_STAGE,) * len(STAGES), ((block,) * PER_STAGE,) * len(STAGES))
            for r in RESOLUTIONS
            for block in CHOICES
        ]

    def segment_keys(self) -> list[tuple[Hashable, Hashable]]:
        """Per resolution its fixed part (0-24), then per resolution, stage, position and
        (ks, e): 25 + ((r * 5 + stage) * 4 + position) * 9 + choice."""
        fixed = [(("fixed", r), None) for r in RESOLUTIONS]
        blocks = [
            ((r, s, i), block)
            for r in RESOLUTIONS
            for s in range(len(STAGES))
            for i in range(PER_STAGE)
            for block in CHOICES
        ]
        return [*fixed, *blocks]

    def segment_numbers(self, items: Sequence[str | int]) -> tuple[np.ndarray, np.ndarray]:
        read = np.zeros(len(items), dtype=bool)
        resolutions: list[int] = []
        depths: list[list[int]] = []
        chosen: list[int | None] = []
        for i, item in enumerate(items):  # the canonical form: r224:k3e4-k5e6/... (5 stages)
            if type(item) is not str:
                continue
            head, _, body = item.partition(":")
            r = _RESOLUTION_OF.get(head)
            stages = body.split("/")
            if r is None or len(stages) != len(STAGES):
                continue
            blocks = list(map(_CHOICE_OF.get, body.replace("/", "-").split("-")))
            depth = [stage.count("-") + 1 for stage in stages]
            if None in blocks or not all(d in DEPTHS for d in depth):
                continue
            read[i] = True
            resolutions.append(r)
            depths.append(depth)
            chosen.extend(blocks)
        numbers = np.full((len(items), 1 + BLOCKS), -1, dtype=np.int64)
        if resolutions:
            res = np.array(resolutions, dtype=np.int64)[:, None]
            # each arch's blocks, stage by stage, in the slots its depths use
            used = (np.arange(PER_STAGE) < np.array(depths)[:, :, None]).reshape(len(res), BLOCKS)
            block = np.full((len(res), BLOCKS), -1, dtype=np.int64)
            block[used] = np.array(chosen, dtype=np.int64)
            number = len(RESOLUTIONS) + (res * BLOCKS + np.arange(BLOCKS)) * len(CHOICES) + block
            numbers[read, 0] = res[:, 0]
            numbers[read, 1:] = np.where(used, number, -1)
        return numbers, read

    def predictor_graph(self, arch: OfaArch) -> OpGraph:
        """The whole network: its blocks differ in shape along it."""
        return self.graph(arch)

    def from_index(self, index: int) -> OfaArch:
        if not 0 <= index < self.size:
            raise ArchError(f"{self.name} index {index} is out of range 0..{self.size - 1}")
        stages = []
        for _ in STAGES:
            index, digit = divmod(index, STAGE_RADIX)
            d = 0
            while digit >= STAGE_SIZES[d]:
                digit -= STAGE_SIZES[d]
                d += 1
            blocks = []
            for _ in range(DEPTHS[d]):
                digit, choice = divmod(digit, len(CHOICES))
                blocks.append(CHOICES[choice])
            stages.append(tuple(reversed(blocks)))
        stages.reverse()
        return OfaArch(RESOLUTIONS[index], tuple(len(s) for s in stages), tuple(stages))

    def from_published(self, arch: Mapping[str, Any]) -> OfaArch:
        """OFA's dict: ``ks`` and ``e`` (20 each), ``d`` (5), ``r`` (an int or a one-element
        list)."""
        try:
            ks, e, d, r = (arch[key] for key in ("ks", "e", "d", "r"))
        except KeyError as exc:
            raise ArchError(f"an {self.name} arch needs ks, e, d and r; no {exc}") from None
        if isinstance(r, list) and len(r) == 1:
            r = r[0]
        ks, e, d = (
            _ints(v, name, n)
            for v, name, n in ((ks, "ks", BLOCKS), (e, "e", BLOCKS), (d, "d", len(STAGES)))
        )
        if not isinstance(r, int) or isinstance(r, bool) or r not in RESOLUTIONS:
            raise ArchError(f"r must be one of 128, 132, ..., 224; got {excerpt(repr(r))}")
        for name, values, allowed in (("ks", ks, KERNELS), ("e", e, EXPANSIONS), ("d", d, DEPTHS)):
            bad = [v for v in values if v not in allowed]
            if bad:
                raise ArchError(f"{name} values are {allowed}; got {bad[0]}")
        stages = tuple(
            tuple((ks[s * PER_STAGE + i], e[s * PER_STAGE + i]) for i in range(depth))
            for s, depth in enumerate(d)
        )
        return OfaArch(r, tuple(d), stages)

    def from_string(self, text: str) -> OfaArch:
        match = re.fullmatch(r"r(\d{3}):([0-9ke/\-]+)", text)
        if match is None:
            raise ArchError(
                f"not an {self.name} arch: {excerpt(text)} (OFA's dict with ks, e, d and r, "
                "r224:k3e4-k5e6/... or an index)"
            )
        resolution = int(match.group(1))
        if resolution not in RESOLUTIONS:
            raise ArchError(f"resolution {resolution} is not one of 128, 132, ..., 224")
        stages = match.group(2).split("/")
        if len(stages) != len(STAGES):
            raise ArchError(f"an {self.name} arch has {len(STAGES)} stages, got {len(stages)}")
        blocks = []
        for s, stage in enumerate(stages):
            tokens = stage.split("-")
            if len(tokens) not in DEPTHS:
                raise ArchError(f"stage {s}: {len(tokens)} blocks; a stage has 2, 3 or 4")
            parsed = []
            for token in tokens:
                block = _BLOCK_OF.get(token)
                if block is None:
                    raise ArchError(
                        f"stage {s}: block {excerpt(token)} is not k{{3,5,7}}e{{3,4,6}}"
                    )
                parsed.append(block)
            blocks.append(tuple(parsed))
        return OfaArch(resolution, tuple(len(b) for b in blocks), tuple(blocks))

    def from_vector(self, vector: Sequence[int]) -> OfaArch:
        """``OfaArch.vector``: ``[r, d x 5, (ks, e) x 20]``, 0 for a block a stage does not use
        (a LatBench-style pickle's key)."""
        width = 1 + len(STAGES) + 2 * BLOCKS
        if len(vector) != width:
            raise ArchError(f"an {self.name} vector has {width} numbers, got {len(vector)}")
        r, depths, pairs = vector[0], vector[1 : 1 + len(STAGES)], vector[1 + len(STAGES) :]
        ks = [pairs[2 * i] or KERNELS[0] for i in range(BLOCKS)]
        e = [pairs[2 * i + 1] or EXPANSIONS[0] for i in range(BLOCKS)]
        arch = self.from_published({"ks": ks, "e": e, "d": list(depths), "r": r})
        if tuple(vector) != arch.vector:
            raise ArchError("a block a stage does not use must be 0, 0 in the vector")
        return arch

    def parse(self, arch: str | int) -> OfaArch:
        if isinstance(arch, int):
            return self.from_index(arch)
        text = arch.strip()
        if is_integer(text):
            return self.from_index(int(text))
        if text.startswith("{"):
            return self.from_published(_mapping(text))
        if "," in text:
            parts = [p.strip() for p in text.strip("()[]").split(",")]
            if not all(is_integer(p) for p in parts):
                raise ArchError(f"not an {self.name} vector: {excerpt(text)}")
            return self.from_vector([int(p) for p in parts])
        return self.from_string(text)

    def encode(self, arch: OfaArch) -> str:
        return arch.string

    def encoding(self, arch: OfaArch) -> np.ndarray:
        """One-hot: the resolution (25), each stage's depth (3 x 5), each block's kernel and
        expansion (20 x 6, zero for a block the stage does not use)."""
        row = np.zeros(len(RESOLUTIONS) + len(STAGES) * len(DEPTHS) + BLOCKS * 6)
        row[RESOLUTIONS.index(arch.resolution)] = 1.0
        at = len(RESOLUTIONS)
        for s, stage in enumerate(arch.blocks):
            row[at + s * len(DEPTHS) + DEPTHS.index(len(stage))] = 1.0
        at += len(STAGES) * len(DEPTHS)
        for s, stage in enumerate(arch.blocks):
            for i, (k, e) in enumerate(stage):
                block = at + (s * PER_STAGE + i) * 6
                row[block + KERNELS.index(k)] = 1.0
                row[block + 3 + EXPANSIONS.index(e)] = 1.0
        return row

    def live_encoding(self, arch: OfaArch) -> np.ndarray:
        """Empty: no op of this space is ever dead."""
        return np.zeros(0)

    def sample(self, n: int, seed: int) -> list[OfaArch]:
        """OFA's sampler: each stage's depth, each block's kernel and expansion and the
        resolution uniformly."""
        rng = np.random.default_rng(seed)
        seen: dict[OfaArch, None] = {}
        while len(seen) < n:
            depths = tuple(int(d) for d in rng.choice(DEPTHS, len(STAGES)))
            blocks = tuple(
                tuple(CHOICES[int(c)] for c in rng.integers(0, len(CHOICES), d)) for d in depths
            )
            resolution = RESOLUTIONS[int(rng.integers(len(RESOLUTIONS)))]
            seen.setdefault(OfaArch(resolution, depths, blocks), None)
        return list(seen)

    def example(self) -> OfaArch:
        """The largest network: depth 4, kernel 7, expansion 6 everywhere, at 224."""
        return OfaArch(224, (4,) * len(STAGES), (((7, 6),) * 4,) * len(STAGES))

    def graph(self, arch: OfaArch, form: GraphForm = GraphForm.pruned) -> OpGraph:
        """The network; both forms are the same graph (no op of this space is ever dead)."""
        r = arch.resolution
        b = GraphBuilder(f"ofa-{arch.index}", (1, 3, r, r))
        x = b.hard_swish(
            "stem.act", b.batch_norm("stem.bn", b.conv("stem.conv", b.input, 16, 3, 2))
        )
        x = _mbconv(b, "first", x, 16, 3, 1, 1, "relu", se=False)
        for s, ((channels, stride, act, se), stage) in enumerate(
            zip(STAGES, arch.blocks, strict=True)
        ):
            for i, (k, e) in enumerate(stage):
                x = _mbconv(b, f"s{s}.b{i}", x, channels, k, e, stride if i == 0 else 1, act, se)
        x = b.hard_swish(
            "final.act", b.batch_norm("final.bn", b.conv("final.conv", x, FINAL_EXPAND, 1))
        )
        x = b.global_avg_pool("head.pool", x)
        x = b.hard_swish("mix.act", b.conv("mix.conv", x, FEATURE_MIX, 1))
        return b.build(b.linear("head.fc", b.flatten("head.flatten", x), self.n_classes))


def _ints(value: object, name: str, n: int) -> list[int]:
    if not isinstance(value, list) or len(value) != n:
        raise ArchError(f"{name} must be a list of {n} integers")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ArchError(f"{name} must be a list of {n} integers")
    return value


def _mapping(text: str) -> dict[str, Any]:
    """OFA's dict as JSON or as Python prints it (``None`` included)."""
    try:
        value = json.loads(text)
    except ValueError:
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise ArchError(f"not a dict of ks, e, d and r: {excerpt(text)}") from None
    if not isinstance(value, dict):
        raise ArchError(f"not a dict of ks, e, d and r: {excerpt(text)}")
    return value


def _act(b: GraphBuilder, name: str, x: str, act: str) -> str:
    return b.relu(name, x) if act == "relu" else b.hard_swish(name, x)


def _mbconv(
    b: GraphBuilder,
    name: str,
    x: str,
    c_out: int,
    k: int,
    e: int,
    stride: int,
    act: str,
    se: bool,
) -> str:
    c_in = b.shape(x)[1]
    mid = make_divisible(c_in * e)
    h = x
    if e != 1:
        h = _act(
            b,
            f"{name}.expand.act",
            b.batch_norm(f"{name}.expand.bn", b.conv(f"{name}.expand", h, mid, 1)),
            act,
        )
    mid = b.shape(h)[1]
    h = _act(
        b,
        f"{name}.dw.act",
        b.batch_norm(f"{name}.dw.bn", b.conv(f"{name}.dw", h, mid, k, stride, groups=mid)),
        act,
    )
    if se:
        squeezed = b.global_avg_pool(f"{name}.se.pool", h)
        reduced = b.relu(
            f"{name}.se.act",
            b.conv(f"{name}.se.reduce", squeezed, make_divisible(mid // 4), 1, bias=True),
        )
        gate = b.hard_sigmoid(
            f"{name}.se.gate", b.conv(f"{name}.se.expand", reduced, mid, 1, bias=True)
        )
        h = b.mul(f"{name}.se.scale", h, gate)
    h = b.batch_norm(f"{name}.project.bn", b.conv(f"{name}.project", h, c_out, 1))
    if stride == 1 and c_in == c_out:
        h = b.add(f"{name}.add", x, h)
    return h
