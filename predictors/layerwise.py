"""The GCN on a layer-wise space's archs without their graphs: the same features and the same
forward pass as the graph path (a test compares them), assembled from pieces and run sparse.

**Pieces.** A layer-wise space's network (``spaces.base.Layerwise``) is a chain: the fixed part's
start, one segment per slot, the fixed part's end. Each (slot, choice) is cut once from the
space's covering archs into a piece: its node rows (``features.graph_features``' rows: op type,
shapes and costs depend on the node alone), its edges, which of its nodes read the piece's
input and which node gives its output (none for an identity: a skipped layer). An arch's
features are its pieces in order, each piece's readers joined to the previous output, and the
global node joined to every node, normalised as ``graph_features`` normalises them.

**Forward.** Where every op is live (these spaces have no dead ops: the build checks it), the
two adjacencies are one, so ``[A h, A_live h] W = A h (W_top + W_bottom)``; ``A h`` is summed
over the edges (a few per node, the global node's to all), never as an N x N product. The
layer norm, ReLU and head are the graph path's.

A space that breaks a premise (a piece reading two tensors, a dead op) is answered through
graphs: ``LayerwisePieces.build`` returns None.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from latlab.opkey import op_cost
from latlab.predictors.features import (
    FEATURES,
    GraphFeatures,
    graph_features,
)
from latlab.predictors.forward import LAYER_NORM_EPS
from latlab.spaces import get_space
from latlab.spaces.base import Layerwise

__all__ = [
    "CHUNK",
    "LayerwisePieces",
    "Piece",
    "SparseBatch",
    "layerwise_pieces",
    "sparse_batch",
    "sparse_forward",
]

#: Archs per sparse pass: the node arrays stay in cache (64: 2,100 archs/s per member on FBNet
#: here, against 1,800 at 256 and 590 in one pass of 2,000).
CHUNK = 64


@dataclass(frozen=True)
class Piece:
    x: np.ndarray  # [n, FEATURES] the nodes' rows
    edges: np.ndarray  # [e, 2] local pairs, each once
    readers: np.ndarray  # local nodes that read the piece's input
    output: int | None  # local node that gives its output; None: the input passes through
    cost: tuple[float, float]  # (MFLOPs, MB moved)


@dataclass(frozen=True)
class SparseBatch:
    """Archs' graphs as one node list, each arch's nodes contiguous from its global node
    (``starts``). Per node: its self-loop weight, up to K neighbours (``nbr``, padded with the
    node itself at weight 0) and the weight of its edge to its arch's global node (``to_global``;
    for a global node, its self-loop: the global row is summed over the arch's rows)."""

    x: np.ndarray  # [nodes, FEATURES]
    starts: np.ndarray  # [archs] the global node of each arch
    owner: np.ndarray  # [nodes] the global node of the node's arch
    self_weight: np.ndarray  # [nodes]
    nbr: np.ndarray  # [nodes, K]
    nbr_weight: np.ndarray  # [nodes, K]
    to_global: np.ndarray  # [nodes]


@dataclass(frozen=True)
class LayerwisePieces:
    space: Layerwise[object]
    pieces: dict[tuple[Hashable, Hashable], list[Piece]]

    @classmethod
    def build(cls, space: Layerwise[object]) -> LayerwisePieces | None:
        pieces: dict[tuple[Hashable, Hashable], list[Piece]] = {}
        for arch in space.covering():
            cut = _cut(space, arch)
            if cut is None:
                return None
            for part, found in cut.items():
                known = pieces.setdefault(part, found)
                if len(known) != len(found) or any(
                    a.x.shape != b.x.shape or not np.array_equal(a.x, b.x)
                    for a, b in zip(known, found, strict=True)
                ):
                    return None  # a segment that depends on its neighbours
        return cls(space, pieces)

    def features(self, arch: object) -> tuple[list[Piece], GraphFeatures] | None:
        """The arch's pieces in order and its linear features (costs and one-hot: what the
        linear floors and baselines read; no dense adjacency); None if a piece is missing."""
        parts = self.space.segments(arch)
        try:
            fixed = self.pieces[parts[0]]
            middle = [p for part in parts[1:] for p in self.pieces[part]]
        except KeyError:
            return None
        ordered = [fixed[0], *middle, *fixed[1:]]
        flops = sum(p.cost[0] for p in ordered)
        moved = sum(p.cost[1] for p in ordered)
        space = self.space
        linear = GraphFeatures(
            x=np.zeros((0, FEATURES), np.float32),
            adj=np.zeros((0, 0), np.float32),
            adj_live=np.zeros((0, 0), np.float32),
            cost_pruned=(flops, moved),
            cost_full=(flops, moved),
            onehot=np.asarray(space.encoding(arch), dtype=np.float64),
            onehot_live=np.asarray(space.live_encoding(arch), dtype=np.float64),
        )
        return ordered, linear


def _cut(
    space: Layerwise[object], arch: object
) -> dict[tuple[Hashable, Hashable], list[Piece]] | None:
    graph = space.graph(arch)
    features = graph_features(graph)
    if not np.array_equal(features.adj, features.adj_live):
        return None  # a dead op: the two adjacencies differ
    choice = dict(space.segments(arch))
    slot = [space.segment_of(arch, n.name) for n in graph.nodes]
    producer = {t: i for i, node in enumerate(graph.nodes) for t in node.outputs}
    runs: list[tuple[Hashable, list[int]]] = []
    for i, s in enumerate(slot):
        if runs and runs[-1][0] == s:
            runs[-1][1].append(i)
        else:
            runs.append((s, [i]))
    out: dict[tuple[Hashable, Hashable], list[Piece]] = {(s, c): [] for s, c in choice.items()}
    previous: int | None = None  # the node whose output the next piece reads (None: the input)
    run_of = {i: r for r, (_, nodes) in enumerate(runs) for i in nodes}
    for r, (s, nodes) in enumerate(runs):
        local = {g: k for k, g in enumerate(nodes)}
        edges, readers = [], []
        for g in nodes:
            for t in graph.nodes[g].inputs:
                j = producer.get(t)
                if t in graph.inputs or (j is not None and run_of[j] != r):
                    if (j if t not in graph.inputs else None) != previous:
                        return None  # reads a tensor other than the piece's input
                    readers.append(local[g])
                elif j is not None:
                    edges.append((local[g], local[j]))
        later = [
            local[j]
            for g in range(nodes[-1] + 1, len(graph.nodes))
            for t in graph.nodes[g].inputs
            if (j := producer.get(t)) is not None and j in local
        ]
        output = later[0] if later else len(nodes) - 1
        if any(o != output for o in later):
            return None
        flops = sum(op_cost(graph, graph.nodes[g]).flops for g in nodes)
        moved = sum(op_cost(graph, graph.nodes[g]).bytes_moved for g in nodes)
        cost = (flops / 1e6, moved / 1e6)
        out[(s, choice[s])].append(
            Piece(
                x=features.x[[g + 1 for g in nodes]],
                edges=np.asarray(sorted(set(edges)), dtype=np.int64).reshape(-1, 2),
                readers=np.asarray(sorted(set(readers)), dtype=np.int64),
                output=output,
                cost=cost,
            )
        )
        previous = nodes[output]
    if len(out[runs[0][0], choice[runs[0][0]]]) > 2:
        return None
    return out


def sparse_batch(archs: Sequence[Sequence[Piece]]) -> SparseBatch:
    rows: list[np.ndarray] = []
    edge_parts: list[np.ndarray] = []
    starts = np.empty(len(archs), dtype=np.int64)
    sizes = np.empty(len(archs), dtype=np.int64)
    base = 0
    global_row = np.zeros((1, FEATURES), np.float32)
    global_row[0, 0] = 1.0  # OP_TYPES[0] is "global"
    for a, pieces in enumerate(archs):
        starts[a] = base
        rows.append(global_row)
        offset = base + 1
        current: int | None = None
        for piece in pieces:
            if len(piece.edges):
                edge_parts.append(piece.edges + offset)
            if current is not None and len(piece.readers):
                edge_parts.append(
                    np.column_stack([piece.readers + offset, np.full(len(piece.readers), current)])
                )
            rows.append(piece.x)
            if piece.output is not None:
                current = offset + piece.output
            offset += piece.x.shape[0]
        sizes[a] = offset - base
        base = offset
    x = np.concatenate(rows)
    n = x.shape[0]
    edges = np.concatenate(edge_parts) if edge_parts else np.zeros((0, 2), np.int64)
    owner = np.repeat(starts, sizes)
    # degrees as graph_features counts them: self-loop, global node, neighbours; a global node:
    # itself and every node of its arch
    degree = 2.0 + np.bincount(edges.ravel(), minlength=n)
    degree[starts] = sizes
    ends = np.concatenate([edges, edges[:, ::-1]])
    order = np.argsort(ends[:, 0], kind="stable")
    ends = ends[order]
    count = np.bincount(ends[:, 0], minlength=n)
    k = max(int(count.max()) if len(count) else 0, 1)
    nbr = np.repeat(np.arange(n)[:, None], k, axis=1)
    nbr_weight = np.zeros((n, k), np.float32)
    first = np.searchsorted(ends[:, 0], np.arange(n))
    slot = np.arange(len(ends)) - first[ends[:, 0]]
    nbr[ends[:, 0], slot] = ends[:, 1]
    inv = 1.0 / np.sqrt(degree)
    nbr_weight[ends[:, 0], slot] = inv[ends[:, 0]] * inv[ends[:, 1]]
    to_global = (inv * inv[owner]).astype(np.float32)
    return SparseBatch(
        x=x,
        starts=starts,
        owner=owner,
        self_weight=(inv * inv).astype(np.float32),
        nbr=nbr,
        nbr_weight=nbr_weight,
        to_global=to_global,
    )


def sparse_forward(weights: Mapping[str, np.ndarray], layers: int, data: SparseBatch) -> np.ndarray:
    """``forward.gcn_forward`` on the same graphs, where both adjacencies are one."""
    h = data.x
    is_global = np.zeros(len(h), dtype=bool)
    is_global[data.starts] = True
    self_w = np.where(is_global, 0.0, data.self_weight).astype(np.float32)[:, None]
    glob_w = data.to_global[:, None]
    for i in range(layers):
        w = weights[f"convs.{i}.weight"]
        half = w.shape[0] // 2
        # separate gathers beat one (nodes, K + 2, width) gather here (2,100 vs 1,600 archs/s)
        messages = h * self_w + h[data.owner] * glob_w
        for k in range(data.nbr.shape[1]):
            messages += h[data.nbr[:, k]] * data.nbr_weight[:, k, None]
        # a global node reads every node of its arch (and itself): a sum over its rows
        messages[data.starts] = np.add.reduceat(h * glob_w, data.starts, axis=0)
        h = messages @ (w[:half] + w[half:]) + weights[f"convs.{i}.bias"]
        mean = h.mean(axis=-1, keepdims=True)
        var = h.var(axis=-1, keepdims=True)
        h = (h - mean) / np.sqrt(var + LAYER_NORM_EPS)
        h = h * weights[f"norms.{i}.weight"] + weights[f"norms.{i}.bias"]
        np.maximum(h, 0.0, out=h)
    out: np.ndarray = h[data.starts] @ weights["head.weight"].T + weights["head.bias"]
    return out[:, 0]


#: Pieces per (space, parameters), built on first use (None: answered through graphs).
_PIECES: dict[tuple[str, str], LayerwisePieces | None] = {}
_PIECES_LOCK = threading.Lock()


def layerwise_pieces(space_name: str, space_params: Mapping[str, Any]) -> LayerwisePieces | None:
    """The space's pieces, or None where its archs go through their graphs (not layer-wise,
    or a premise broken)."""
    key = (space_name, repr(sorted(space_params.items())))
    with _PIECES_LOCK:
        if key not in _PIECES:
            space = get_space(space_name, **space_params)
            _PIECES[key] = LayerwisePieces.build(space) if isinstance(space, Layerwise) else None
        return _PIECES[key]
