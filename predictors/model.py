"""A trained latency predictor as the server holds it: GCN members (numpy weights), each the
correction of its own linear baseline, a linear floor, and the weight the GCN gets against the
floor, chosen on cross-validated predictions (predictors.train). Stored as one ``.npz`` file (no
pickle: arrays and a JSON header with the config and the training report), so an artifact never
breaks across library versions.

The prediction, in log space::

    member k:  log p_k = log baseline_k(x) + target.decode(gcn_k(x))     (baseline: linear)
    GCN:       log p   = mean_k log p_k
    served:    log y   = w log p + (1 - w) log floor(x)

``w = 1`` serves the GCN alone, ``w = 0`` the linear floor alone (then there are no members).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal, Self

import numpy as np

from latlab.graph import OpGraph
from latlab.latency_model import Estimates, LatencyModel
from latlab.predictors.errors import PredictorError
from latlab.predictors.features import FEATURES, GraphFeatures, arch_features, batch, graph_features
from latlab.predictors.forward import gcn_forward
from latlab.predictors.layerwise import CHUNK, layerwise_pieces, sparse_batch, sparse_forward
from latlab.predictors.linear import LinearModel
from latlab.predictors.npz import read_npz, write_npz

__all__ = [
    "FORMAT_VERSION",
    "GcnConfig",
    "GcnPredictor",
    "Member",
    "TargetScale",
]

FORMAT_VERSION = 3


@dataclass(frozen=True)
class GcnConfig:
    """Network and training settings. The defaults are BRP-NAS's published ones (Eagle's code:
    4 x 600 units, AdamW lr 4e-4 / wd 5e-4, L1 on the latency itself, 250 epochs)."""

    hidden: int = 600
    layers: int = 4
    dropout: float = 0.2
    lr: float = 4e-4
    #: "cosine": the learning rate decays to zero over ``epochs`` (fine steps at the end).
    lr_schedule: Literal["constant", "cosine"] = "constant"
    weight_decay: float = 5e-4
    epochs: int = 250
    batch_size: int = 32
    loss: Literal["l1", "mse"] = "l1"
    #: "raw": latency in ms scaled by the training mean; "log": log latency, standardised.
    target: Literal["raw", "log"] = "raw"
    #: The training archs are cut into this many folds; member k trains on all folds but k and
    #: stops early on fold k, so every arch of a trained fold has a prediction from a member
    #: that never saw it (what the floor guard and the cross-validated metrics read).
    folds: int = 10
    #: Members trained (folds 0..members-1); None: one per fold.
    members: int | None = 1
    #: Stop a member after this many epochs without a better loss on its fold (None: never).
    patience: int | None = None
    #: "linear": each member learns the ratio of latency to a linear model of its training
    #: archs' costs (predictors.linear, design "cost"); "none": the latency itself.
    baseline: Literal["none", "linear"] = "none"
    seed: int = 0

    @property
    def n_members(self) -> int:
        return self.folds if self.members is None else min(self.members, self.folds)


@dataclass(frozen=True)
class TargetScale:
    kind: Literal["raw", "log"]
    shift: float
    scale: float

    @classmethod
    def fit(cls, kind: Literal["raw", "log"], values: np.ndarray) -> TargetScale:
        if kind == "log":
            logs = np.log(values)
            return cls("log", float(logs.mean()), float(logs.std()) or 1.0)
        return cls("raw", 0.0, float(values.mean()))

    def encode(self, values: np.ndarray) -> np.ndarray:
        v = np.log(values) if self.kind == "log" else values
        return np.asarray((v - self.shift) / self.scale, dtype=np.float32)

    def decode_log(self, y: np.ndarray) -> np.ndarray:
        """The log of the decoded value (a raw target is clipped above zero first)."""
        values = y.astype(np.float64) * self.scale + self.shift
        if self.kind == "log":
            return values
        return np.log(np.maximum(values, 1e-6 * max(self.scale, 1e-9)))


@dataclass(frozen=True)
class Member:
    weights: dict[str, np.ndarray]
    #: What the network's output multiplies (None: it predicts the latency itself).
    baseline: LinearModel | None


@dataclass(frozen=True)
class GcnPredictor(LatencyModel):
    """Kind ``gcn`` of ``latlab.latency_model``."""

    kind: ClassVar[str] = "gcn"
    tabulate: ClassVar[bool] = True

    config: GcnConfig
    target: TargetScale
    members: tuple[Member, ...]
    #: The linear model blended with the GCN (None when the GCN is served alone).
    floor: LinearModel | None
    #: The GCN's weight against the floor, in log space: 1 the GCN alone, 0 the floor alone.
    gcn_weight: float
    #: What it was trained on, how each candidate scored and which one is served: embedded.
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 <= self.gcn_weight <= 1.0:
            raise PredictorError(f"gcn_weight {self.gcn_weight} is not in [0, 1]")
        if self.gcn_weight > 0 and not self.members:
            raise PredictorError("a predictor that weighs its GCN needs members")
        if self.gcn_weight < 1 and self.floor is None:
            raise PredictorError("a predictor that weighs a floor needs one")

    @property
    def served(self) -> str:
        """What answers: ``gcn``, ``linear:<design>`` or ``blend:<w>:<design>``."""
        if self.gcn_weight >= 1.0:
            return "gcn"
        assert self.floor is not None
        if self.gcn_weight <= 0.0:
            return f"linear:{self.floor.design}"
        return f"blend:{self.gcn_weight:g}:{self.floor.design}"

    def member_log_ms(
        self,
        features: Sequence[GraphFeatures],
        batch_size: int = 2048,
        raw: Callable[[Member, int], np.ndarray] | None = None,
    ) -> np.ndarray:
        """``[members, items]``: each member's log latency (ms). ``raw(member, start)``: the
        network's output for the chunk of ``batch_size`` items from ``start`` computed another
        way (the sparse pass of ``predictors.layerwise``); default the dense pass on
        ``features``."""
        if not self.members:
            return np.zeros((0, len(features)))
        outputs = []
        for start in range(0, len(features), batch_size):
            chunk = features[start : start + batch_size]
            data = batch(chunk) if raw is None else None
            rows = []
            for m in self.members:
                if raw is not None:
                    out = raw(m, start)
                else:
                    assert data is not None
                    out = gcn_forward(m.weights, self.config.layers, data)
                log_ms = self.target.decode_log(out)
                if m.baseline is not None:
                    log_ms = log_ms + np.log(m.baseline(chunk))
                rows.append(log_ms)
            outputs.append(np.stack(rows))
        return np.concatenate(outputs, axis=1)

    def predict(
        self,
        features: Sequence[GraphFeatures],
        batch_size: int = 2048,
        raw: Callable[[Member, int], np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Latency (ms) per item, and the spread of the GCN members scaled by their weight
        (None with fewer than two members in the answer); ``raw`` as ``member_log_ms``."""
        log_ms = np.zeros(len(features))
        spread = None
        if self.gcn_weight > 0:
            members = self.member_log_ms(features, batch_size, raw)
            log_ms += self.gcn_weight * members.mean(axis=0)
            if len(self.members) > 1:
                spread = self.gcn_weight * members.std(axis=0)
        if self.gcn_weight < 1:
            assert self.floor is not None
            log_ms += (1.0 - self.gcn_weight) * np.log(self.floor(features))
        mean = np.exp(log_ms)
        return mean, (mean * spread if spread is not None else None)

    def predict_graphs(self, graphs: Sequence[OpGraph]) -> Estimates:
        return self._estimates([graph_features(g) for g in graphs])

    def predict_archs(
        self, space_name: str, space_params: dict[str, Any], archs: Sequence[Any]
    ) -> Estimates:
        """A layer-wise space's archs from pieces, sparse (``predictors.layerwise``: the
        same features and outputs, no graphs); any other's through their cached features."""
        pieces = layerwise_pieces(space_name, space_params) if self.gcn_weight > 0 else None
        found = [pieces.features(a) for a in archs] if pieces is not None else []
        if pieces is None or any(f is None for f in found):
            return self._estimates(arch_features(space_name, space_params, archs))
        assembled = [f for f in found if f is not None]
        batches = [
            sparse_batch([f[0] for f in assembled[i : i + CHUNK]])
            for i in range(0, len(assembled), CHUNK)
        ]

        def raw(member: Member, start: int) -> np.ndarray:
            return sparse_forward(member.weights, self.config.layers, batches[start // CHUNK])

        mean, std = self.predict([f[1] for f in assembled], CHUNK, raw)
        return Estimates(latency_ms=mean, uncertainty_ms=std)

    def _estimates(self, features: Sequence[GraphFeatures]) -> Estimates:
        mean, std = self.predict(features)
        return Estimates(latency_ms=mean, uncertainty_ms=std)

    def describe(self) -> dict[str, Any]:
        return {
            "training_config": self.meta.get("config"),
            "metrics": {
                k: self.meta[k]
                for k in ("served", "cv", "candidates", "test", "epochs", "train_s")
                if k in self.meta
            },
        }

    def payload(self) -> bytes:
        header = {
            "format_version": FORMAT_VERSION,
            "features": FEATURES,
            "config": asdict(self.config),
            "target": asdict(self.target),
            "baselines": [m.baseline.to_dict() if m.baseline else None for m in self.members],
            "floor": self.floor.to_dict() if self.floor is not None else None,
            "gcn_weight": self.gcn_weight,
            "meta": self.meta,
        }
        arrays = {
            f"m{k}/{name}": value
            for k, m in enumerate(self.members)
            for name, value in m.weights.items()
        }
        return write_npz(header, arrays)

    @classmethod
    def from_payload(cls, data: bytes) -> Self:
        header, arrays = read_npz(data, "predictor")
        if header.get("format_version") != FORMAT_VERSION or header.get("features") != FEATURES:
            raise PredictorError(
                f"predictor artifact of format {header.get('format_version')} with "
                f"{header.get('features')} features; this latlab reads format {FORMAT_VERSION} "
                f"with {FEATURES}: train it again with latlab train"
            )
        try:
            baselines = header["baselines"]
            weights: list[dict[str, np.ndarray]] = [{} for _ in baselines]
            for key, value in arrays.items():
                k, name = key.split("/", 1)
                weights[int(k[1:])][name] = value
            return cls(
                config=GcnConfig(**header["config"]),
                target=TargetScale(**header["target"]),
                members=tuple(
                    Member(w, LinearModel.from_dict(b) if b else None)
                    for w, b in zip(weights, baselines, strict=True)
                ),
                floor=LinearModel.from_dict(header["floor"]) if header["floor"] else None,
                gcn_weight=float(header["gcn_weight"]),
                meta=header["meta"],
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise PredictorError(f"a malformed latlab predictor artifact: {exc}") from exc
