"""Few-shot transfer: a device's latencies from a few of its own measurements and other devices'
latencies on the same archs (numpy only; the server trains and serves it).

**Sources.** Each source device's log latencies over the archs every source has, standardised
per device, make a table ``Z`` (archs x sources). Its mean column ``zbar`` (the average device's
shape) and its principal components ``phi_j`` (scaled so that the sources' loadings on each have
unit variance) are an arch's features: ``[1, zbar, phi_1 .. phi_r]``.

**The target** (a device with k measured archs) is taken to be one more draw from the same
population of devices::

    log y(a) = c0 + c1 * zbar(a) + sum_j w_j * phi_j(a) + noise,   w_j ~ N(0, alpha)

``c0`` and ``c1`` (its speed and how far it follows the average shape) are free, the loadings
``w`` shrink towards the average device with a prior variance ``alpha``, the noise has variance
``noise``; both are chosen by the evidence of the k measurements (a grid), so a target like the
sources follows them closely and one unlike them leans on its own data. The answer for every
arch of the table is the posterior mean and the predictive standard deviation (log space).
Measured on LatBench's 13 devices, leave one device out (bench/fewshot.py): at k = 20 random
archs, mean Spearman 0.956 against 0.950 for a ridge regression over the sources' log latencies.

**Which archs to measure** (``choose``): k-means over the same features, the arch nearest each
centre: archs that cover how the sources differ, as densely as the space holds them (choosing
for the largest predictive variance instead picked extreme archs and lost 8 points of the share
within +-10 % on LatBench).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, Self

import numpy as np

from latlab import untrusted
from latlab.graph import OpGraph
from latlab.latency_model import Estimates, LatencyModel
from latlab.metrics import regression_metrics
from latlab.predictors.errors import PredictorError
from latlab.untrusted import excerpt

__all__ = [
    "MIN_SAMPLES",
    "SourceTable",
    "TransferBasis",
    "TransferFit",
    "TransferPredictor",
    "choose",
    "fit_transfer",
]

#: The fewest measured archs a transfer predictor is fitted on.
MIN_SAMPLES = 3
#: A source with fewer archs than this share of the best-covered source is left out (the table
#: holds only the archs every source has).
MIN_COVERAGE = 0.5
FORMAT_VERSION = 1
META = "meta.json"

_ALPHAS = 10.0 ** np.arange(-3.0, 3.01, 0.5)
_NOISES = 10.0 ** np.arange(-5.0, 0.01, 0.25)
#: The prior variance of the free coefficients (log-latency units: effectively flat).
_FLAT = 1e4
_KMEANS_ITERATIONS = 30


@dataclass(frozen=True)
class SourceTable:
    """Log latencies (ms) of the source devices on the archs they all have."""

    archs: tuple[str, ...]
    sources: tuple[str, ...]
    log_ms: np.ndarray  # archs x sources
    #: Sources left out and why.
    left_out: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, latency_ms: Mapping[str, Mapping[str, float]]) -> SourceTable:
        """From ``{source: {arch: latency_ms}}``; sources covering less than half of the
        best-covered one are left out (``left_out`` says so)."""
        tables = {s: t for s, t in latency_ms.items() if t}
        if not tables:
            raise PredictorError("no source device has latencies for this space")
        most = max(len(t) for t in tables.values())
        left_out = {
            s: f"{len(t)} archs, under half of the {most} the best-covered source has"
            for s, t in tables.items()
            if len(t) < MIN_COVERAGE * most
        }
        kept = sorted(s for s in tables if s not in left_out)
        common = set.intersection(*(set(tables[s]) for s in kept))
        archs = tuple(sorted(common))
        log_ms = np.log(np.array([[tables[s][a] for s in kept] for a in archs], dtype=np.float64))
        if not np.all(np.isfinite(log_ms)) or log_ms.size == 0:
            raise PredictorError("source latencies must be positive and finite")
        return cls(archs, tuple(kept), log_ms.reshape(len(archs), len(kept)), left_out)


@dataclass(frozen=True)
class TransferBasis:
    """An arch's features from the sources: ``[1, zbar, phi_1 .. phi_r]`` per table arch."""

    table: SourceTable
    features: np.ndarray  # archs x (2 + r)

    @classmethod
    def of(cls, table: SourceTable) -> TransferBasis:
        spread = table.log_ms.std(axis=0)
        spread[spread == 0] = 1.0
        z = (table.log_ms - table.log_ms.mean(axis=0)) / spread
        zbar = z.mean(axis=1)
        centred = z - zbar[:, None]
        u, s, _ = np.linalg.svd(centred, full_matrices=False)
        keep = s > 1e-8 * max(float(s[0]), 1e-300) if s.size else np.zeros(0, dtype=bool)
        phi = u[:, keep] * (s[keep] / np.sqrt(len(table.sources)))
        features = np.column_stack([np.ones(len(table.archs)), zbar, phi])
        return cls(table, features)

    @cached_property
    def row_of(self) -> dict[str, int]:
        return {a: i for i, a in enumerate(self.table.archs)}

    @property
    def prior_variance(self) -> np.ndarray:
        """Per feature, relative to ``alpha``: the intercept and ``zbar`` free."""
        p = np.ones(self.features.shape[1])
        p[:2] = np.inf
        return p

    def rows(self, archs: Sequence[str]) -> np.ndarray:
        missing = [a for a in archs if a not in self.row_of]
        if missing:
            raise PredictorError(
                f"{len(missing)} of the archs are not in the sources' shared table "
                f"(e.g. {excerpt(missing[0])})"
            )
        return np.array([self.row_of[a] for a in archs], dtype=np.int64)


@dataclass(frozen=True)
class TransferFit:
    """The fitted target: predictions for every table arch and how it was fitted."""

    log_mean: np.ndarray
    log_std: np.ndarray
    alpha: float
    noise: float


def _prior(basis: TransferBasis, alpha: float) -> np.ndarray:
    p = basis.prior_variance * alpha
    return np.where(np.isinf(p), _FLAT, p)


def _evidence(a: np.ndarray, y: np.ndarray, prior: np.ndarray, noise: float) -> float:
    """log N(y; 0, A diag(prior) A^T + noise I), up to a constant."""
    k = a.shape[0]
    cov = (a * prior) @ a.T + noise * np.eye(k)
    try:
        chol = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        return -np.inf
    white = np.linalg.solve(chol, y)
    return float(-0.5 * white @ white - np.log(np.diag(chol)).sum())


def fit_transfer(
    basis: TransferBasis, archs: Sequence[str], latency_ms: Sequence[float]
) -> TransferFit:
    """The target's posterior on every table arch from its measured ``archs``."""
    if len(archs) != len(latency_ms):
        raise PredictorError("need one latency per arch")
    if len(set(archs)) < MIN_SAMPLES:
        raise PredictorError(
            f"{len(set(archs))} distinct measured archs are too few: at least {MIN_SAMPLES}"
        )
    y = np.log(np.asarray(latency_ms, dtype=np.float64))
    if not np.all(np.isfinite(y)):
        raise PredictorError("measured latencies must be positive and finite")
    a = basis.features[basis.rows(archs)]
    _, alpha, noise = max(
        (_evidence(a, y, _prior(basis, al), nv), al, nv) for al in _ALPHAS for nv in _NOISES
    )
    prior = _prior(basis, alpha)
    precision = a.T @ a / noise + np.diag(1.0 / prior)
    cov = np.linalg.inv(precision)
    weights = cov @ a.T @ y / noise
    f = basis.features
    log_mean = f @ weights
    log_std = np.sqrt(np.einsum("ij,jk,ik->i", f, cov, f) + noise)
    return TransferFit(log_mean, log_std, float(alpha), float(noise))


def cross_validated(
    basis: TransferBasis, archs: Sequence[str], latency_ms: Sequence[float]
) -> dict[str, float | int | None]:
    """Leave-one-out over the measured archs (each refitted without it, hyperparameters too):
    the metrics of ``latlab.metrics`` on those predictions."""
    predicted = []
    for i in range(len(archs)):
        rest = [j for j in range(len(archs)) if j != i]
        fit = fit_transfer(basis, [archs[j] for j in rest], [latency_ms[j] for j in rest])
        predicted.append(float(np.exp(fit.log_mean[basis.row_of[archs[i]]])))
    return regression_metrics(predicted, list(latency_ms)).to_dict()


def choose(
    basis: TransferBasis,
    k: int,
    seed: int = 0,
    candidates: Sequence[str] | None = None,
) -> list[str]:
    """``k`` archs to measure: k-means over the sources' features (without the constant), the
    candidate nearest each centre. ``candidates``: the archs that may be chosen (default: the
    whole table; an imported device: the archs it has)."""
    rows = basis.rows(candidates) if candidates is not None else np.arange(len(basis.table.archs))
    if k > len(rows):
        raise PredictorError(f"{k} archs asked for, {len(rows)} to choose from")
    points = basis.features[rows, 1:]
    rng = np.random.default_rng(seed)
    centres = [points[rng.integers(len(points))]]
    nearest = ((points - centres[0]) ** 2).sum(axis=1)
    for _ in range(k - 1):  # k-means++: each next centre drawn by its squared distance
        total = nearest.sum()
        pick = (
            rng.choice(len(points), p=nearest / total) if total > 0 else rng.integers(len(points))
        )
        centres.append(points[pick])
        nearest = np.minimum(nearest, ((points - points[pick]) ** 2).sum(axis=1))
    c = np.array(centres)
    for _ in range(_KMEANS_ITERATIONS):
        label = _nearest_centre(points, c)
        moved = np.array(
            [points[label == j].mean(axis=0) if np.any(label == j) else c[j] for j in range(k)]
        )
        if np.allclose(moved, c):
            break
        c = moved
    chosen: list[int] = []
    for centre in c:
        distance = ((points - centre) ** 2).sum(axis=1)
        distance[chosen] = np.inf
        chosen.append(int(np.argmin(distance)))
    return [basis.table.archs[int(rows[i])] for i in chosen]


def _nearest_centre(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    distance = (
        (points**2).sum(axis=1)[:, None] - 2 * points @ centres.T + (centres**2).sum(axis=1)[None]
    )
    return np.asarray(np.argmin(distance, axis=1))


@dataclass(frozen=True)
class TransferPredictor(LatencyModel):
    """Kind ``transfer`` of ``latlab.latency_model``: the fitted posterior for each arch the
    sources share, looked up by the space's encoding of the arch."""

    kind: ClassVar[str] = "transfer"

    space: str
    space_params: dict[str, Any]
    archs: tuple[str, ...]
    log_mean: np.ndarray
    log_std: np.ndarray
    #: Sources, samples, hyperparameters and cross-validated metrics.
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fitted(
        cls,
        space: str,
        space_params: dict[str, Any],
        basis: TransferBasis,
        fit: TransferFit,
        meta: dict[str, Any],
    ) -> TransferPredictor:
        return cls(
            space,
            dict(space_params),
            basis.table.archs,
            fit.log_mean.astype(np.float32),
            fit.log_std.astype(np.float32),
            {**meta, "alpha": fit.alpha, "noise": fit.noise},
        )

    @cached_property
    def _row_of(self) -> dict[str, int]:
        return {a: i for i, a in enumerate(self.archs)}

    def predict_graphs(self, graphs: Sequence[OpGraph]) -> Estimates:
        raise PredictorError(
            f"a transfer predictor answers archs of its space ({self.space}), not models"
        )

    def predict_archs(
        self, space_name: str, space_params: dict[str, Any], archs: Sequence[Any]
    ) -> Estimates:
        from latlab.spaces import get_space

        if space_name != self.space or dict(space_params) != self.space_params:
            raise PredictorError(
                f"this transfer predictor answers {self.space} {self.space_params}, "
                f"not {excerpt(space_name)} {space_params}"
            )
        space = get_space(space_name, **space_params)
        rows = []
        for item in archs:  # the space's arch objects
            key = space.encode(item)
            row = self._row_of.get(key)
            if row is None:
                raise PredictorError(
                    f"arch {excerpt(key)} is not among the {len(self.archs)} archs the "
                    "transfer predictor's source devices all measured"
                )
            rows.append(row)
        index = np.asarray(rows, dtype=np.int64)
        mean = np.exp(self.log_mean[index].astype(np.float64))
        return Estimates(latency_ms=mean, uncertainty_ms=mean * self.log_std[index])

    def describe(self) -> dict[str, Any]:
        config = {
            k: self.meta[k] for k in ("sources", "samples", "alpha", "noise") if k in self.meta
        }
        return {
            "training_config": config,
            "metrics": {
                "served": "transfer",
                **({"cv": self.meta["cv"]} if "cv" in self.meta else {}),
            },
        }

    def payload(self) -> bytes:
        header = {
            "format_version": FORMAT_VERSION,
            "space": self.space,
            "space_params": self.space_params,
            "meta": self.meta,
        }
        buffer = io.BytesIO()
        arrays = {
            "archs": np.array(self.archs, dtype=np.str_),
            "log_mean": self.log_mean,
            "log_std": self.log_std,
            META: np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
        }
        np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
        return buffer.getvalue()

    @classmethod
    def from_payload(cls, data: bytes) -> Self:
        from latlab.predictors.model import check_declared_sizes

        check_declared_sizes(data)
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                header = untrusted.loads(npz[META].tobytes(), "transfer predictor header")
                archs = tuple(str(a) for a in npz["archs"])
                log_mean, log_std = npz["log_mean"], npz["log_std"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise PredictorError(f"not a transfer predictor artifact: {exc}") from exc
        if header.get("format_version") != FORMAT_VERSION:
            raise PredictorError(
                f"transfer predictor artifact of format {header.get('format_version')}; this "
                f"latlab reads format {FORMAT_VERSION}: fit it again with latlab adapt"
            )
        if not (len(archs) == log_mean.shape[0] == log_std.shape[0]) or log_mean.ndim != 1:
            raise PredictorError("a malformed transfer predictor artifact: array sizes differ")
        try:
            return cls(
                str(header["space"]),
                dict(header["space_params"]),
                archs,
                log_mean.astype(np.float32),
                log_std.astype(np.float32),
                dict(header["meta"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PredictorError(f"a malformed transfer predictor artifact: {exc}") from exc
