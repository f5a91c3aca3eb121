"""A trained GCN predictor as the server holds it: numpy weights (one set per ensemble
member), the target scaling, the training config and its report. Stored as one ``.npz`` file
(no pickle: arrays and a JSON header), so an artifact never breaks across library versions."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from predictors.errors import PredictorError
from predictors.features import FEATURES, GraphFeatures, batch
from predictors.forward import gcn_forward

__all__ = ["FORMAT_VERSION", "CostBaseline", "GcnConfig", "GcnPredictor", "TargetScale"]

FORMAT_VERSION = 2
META = "meta.json"


@dataclass(frozen=True)
class GcnConfig:
    """Network and training settings. The defaults are BRP-NAS's published ones (Eagle's code:
    4 x 600 units, AdamW lr 4e-4 / wd 5e-4, L1 on the latency itself, 250 epochs)."""

    hidden: int = 600
    layers: int = 4
    dropout: float = 0.2
    lr: float = 4e-4
    weight_decay: float = 5e-4
    epochs: int = 250
    batch_size: int = 32
    loss: Literal["l1", "mse"] = "l1"
    #: "raw": latency in ms scaled by the training mean; "log": log latency, standardised.
    target: Literal["raw", "log"] = "raw"
    #: Members trained from different seeds; their spread is the uncertainty.
    ensemble: int = 1
    #: Stop a member after this many epochs without a better validation loss (None: never).
    patience: int | None = None
    #: "cost": the network learns the ratio of latency to a linear fit on the graph's FLOPs and
    #: bytes (CostBaseline); "none": the latency itself.
    baseline: Literal["none", "cost"] = "none"
    seed: int = 0


@dataclass(frozen=True)
class CostBaseline:
    """``latency_ms ≈ mflops_coef · MFLOPs + mb_coef · MB moved + constant_ms`` of the
    predictor's graph, least squares on the training archs; never below ``floor_ms``. The GCN
    then only learns how far each arch sits from its cost (a ratio), which needs far fewer
    samples than the latency itself."""

    mflops_coef: float
    mb_coef: float
    constant_ms: float
    floor_ms: float

    @classmethod
    def fit(cls, features: Sequence[GraphFeatures], latency_ms: np.ndarray) -> CostBaseline:
        design = _design(features)
        coef, *_ = np.linalg.lstsq(design, latency_ms, rcond=None)
        floor = 0.05 * float(np.median(latency_ms))
        return cls(float(coef[0]), float(coef[1]), float(coef[2]), floor)

    def __call__(self, features: Sequence[GraphFeatures]) -> np.ndarray:
        coef = np.array([self.mflops_coef, self.mb_coef, self.constant_ms])
        fitted: np.ndarray = np.maximum(_design(features) @ coef, self.floor_ms)
        return fitted


def _design(features: Sequence[GraphFeatures]) -> np.ndarray:
    return np.array([(*f.cost, 1.0) for f in features], dtype=np.float64)


@dataclass(frozen=True)
class TargetScale:
    kind: Literal["raw", "log"]
    shift: float
    scale: float

    @classmethod
    def fit(cls, kind: Literal["raw", "log"], latency_ms: np.ndarray) -> TargetScale:
        if kind == "log":
            logs = np.log(latency_ms)
            return cls("log", float(logs.mean()), float(logs.std()) or 1.0)
        return cls("raw", 0.0, float(latency_ms.mean()))

    def encode(self, latency_ms: np.ndarray) -> np.ndarray:
        values = np.log(latency_ms) if self.kind == "log" else latency_ms
        return np.asarray((values - self.shift) / self.scale, dtype=np.float32)

    def decode(self, y: np.ndarray) -> np.ndarray:
        values = y.astype(np.float64) * self.scale + self.shift
        return np.exp(values) if self.kind == "log" else values


@dataclass(frozen=True)
class GcnPredictor:
    config: GcnConfig
    target: TargetScale
    members: tuple[dict[str, np.ndarray], ...]
    #: Present when ``config.baseline == "cost"``: the network's output times this is latency.
    baseline: CostBaseline | None = None
    #: What it was trained on and how it scored (device, runtime, data, metrics): embedded.
    meta: dict[str, Any] = field(default_factory=dict)

    def predict(
        self, features: Sequence[GraphFeatures], batch_size: int = 2048
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Latency (ms) per graph, and the ensemble's standard deviation (None for one member)."""
        outputs = []
        for start in range(0, len(features), batch_size):
            data = batch(features[start : start + batch_size])
            outputs.append(
                np.stack([gcn_forward(m, self.config.layers, data) for m in self.members])
            )
        return self.latency_ms(np.concatenate(outputs, axis=1), features)

    def latency_ms(
        self, outputs: np.ndarray, features: Sequence[GraphFeatures]
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The members' raw outputs ``[members, graphs]`` as latency (ms): the ensemble's mean
        and standard deviation (None for one member)."""
        runs = self.target.decode(outputs)
        if self.baseline is not None:
            runs *= self.baseline(features)
        mean = runs.mean(axis=0)
        return mean, (runs.std(axis=0) if len(self.members) > 1 else None)

    def to_bytes(self) -> bytes:
        header = {
            "format_version": FORMAT_VERSION,
            "features": FEATURES,
            "config": asdict(self.config),
            "target": asdict(self.target),
            "baseline": asdict(self.baseline) if self.baseline is not None else None,
            "members": len(self.members),
            "meta": self.meta,
        }
        arrays = {
            f"m{k}/{name}": value for k, m in enumerate(self.members) for name, value in m.items()
        }
        arrays[META] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> GcnPredictor:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                header = json.loads(npz[META].tobytes())
                arrays = {name: npz[name] for name in npz.files if name != META}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise PredictorError(f"not a latlab predictor artifact: {exc}") from exc
        if header.get("format_version") != FORMAT_VERSION or header.get("features") != FEATURES:
            raise PredictorError(
                f"predictor artifact of format {header.get('format_version')} with "
                f"{header.get('features')} features; this latlab reads format {FORMAT_VERSION} "
                f"with {FEATURES}"
            )
        members: list[dict[str, np.ndarray]] = [{} for _ in range(header["members"])]
        for key, value in arrays.items():
            k, name = key.split("/", 1)
            members[int(k[1:])][name] = value
        return cls(
            config=GcnConfig(**header["config"]),
            target=TargetScale(**header["target"]),
            members=tuple(members),
            baseline=CostBaseline(**header["baseline"]) if header["baseline"] else None,
            meta=header["meta"],
        )
