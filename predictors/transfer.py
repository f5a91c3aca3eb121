"""Few-shot transfer: a device's latencies from a few of its own measurements and other devices'
latencies on the same archs (numpy only; the server trains and serves it).

**Sources.** Each source device's log latencies, standardised per device, make a table ``Z``
(archs x sources) over the archs at least half of the sources have; where a source lacks an arch
its value is filled in from the others (the Gaussian conditional mean under the covariance of
the archs every source has), so published datasets that each miss a few archs still cover the
space. Its mean column ``zbar`` (the average device's
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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, Self

import numpy as np

from latlab.graph import OpGraph
from latlab.latency_model import Estimates, LatencyModel
from latlab.metrics import regression_metrics
from latlab.predictors.errors import PredictorError
from latlab.predictors.features import GraphFeatures
from latlab.predictors.linear import Design, LinearModel, design_matrix
from latlab.predictors.npz import read_npz, write_npz
from latlab.untrusted import excerpt

__all__ = [
    "MIN_SAMPLES",
    "Guard",
    "SourceTable",
    "TransferBasis",
    "TransferFit",
    "TransferPredictor",
    "choose",
    "cover",
    "fit_transfer",
    "guard",
    "own_points",
    "served_predictions",
]

#: The fewest measured archs a transfer predictor is fitted on.
MIN_SAMPLES = 3
#: A source with fewer archs than this share of the best-covered source is left out; an arch
#: fewer than this share of the kept sources have is left out of the table.
MIN_COVERAGE = 0.5
FORMAT_VERSION = 1

_ALPHAS = 10.0 ** np.arange(-3.0, 3.01, 0.5)
_NOISES = 10.0 ** np.arange(-5.0, 0.01, 0.25)
#: The prior variance of the free coefficients (log-latency units: effectively flat).
_FLAT = 1e4
_KMEANS_ITERATIONS = 30


@dataclass(frozen=True)
class SourceTable:
    """Log latencies (ms) of the source devices on the archs at least half of them have (NaN
    where a source has none)."""

    archs: tuple[str, ...]
    sources: tuple[str, ...]
    log_ms: np.ndarray  # archs x sources, NaN: not measured
    #: Sources left out and why.
    left_out: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, latency_ms: Mapping[str, Mapping[str, float]]) -> SourceTable:
        """From ``{source: {arch: latency_ms}}``; sources covering less than half of the
        best-covered one are left out (``left_out`` says so), and archs fewer than half of the
        kept sources have."""
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
        values = np.array([v for s in kept for v in tables[s].values()], dtype=np.float64)
        if not np.all(np.isfinite(values) & (values > 0)):
            raise PredictorError("source latencies must be positive and finite")
        counts: dict[str, int] = {}
        for s in kept:
            for a in tables[s]:
                counts[a] = counts.get(a, 0) + 1
        archs = tuple(sorted(a for a, c in counts.items() if c >= MIN_COVERAGE * len(kept)))
        log_ms = np.log(
            np.array(
                [[tables[s].get(a, np.nan) for s in kept] for a in archs], dtype=np.float64
            ).reshape(len(archs), len(kept))
        )
        complete = int(np.sum(~np.isnan(log_ms).any(axis=1)))
        if complete < len(kept) + 2:
            raise PredictorError(
                f"the {len(kept)} source devices have only {complete} archs in common: measure "
                "the same archs on them (a campaign's archs), or name fewer sources"
            )
        return cls(archs, tuple(kept), log_ms, left_out)

    @cached_property
    def complete(self) -> np.ndarray:
        """Per arch: whether every source has it."""
        return np.asarray(~np.isnan(self.log_ms).any(axis=1))


@dataclass(frozen=True)
class TransferBasis:
    """An arch's features from the sources: ``[1, zbar, phi_1 .. phi_r]`` per table arch."""

    table: SourceTable
    features: np.ndarray  # archs x (2 + r)
    #: The sources' standardised log latencies, a missing one filled in (archs x sources).
    z: np.ndarray

    @classmethod
    def of(cls, table: SourceTable) -> TransferBasis:
        """Standardisation and components from the archs every source has; an arch some
        sources lack gets their values filled in as the Gaussian conditional mean given the
        sources that have it (the covariance of the complete archs), then the same features."""
        full = table.complete
        observed = table.log_ms[full]
        spread = observed.std(axis=0)
        spread[spread == 0] = 1.0
        z = (table.log_ms - observed.mean(axis=0)) / spread
        z = _filled(z, full)
        zbar = z.mean(axis=1)
        centred = z - zbar[:, None]
        _, s, vt = np.linalg.svd(centred[full], full_matrices=False)
        keep = s > 1e-8 * max(float(s[0]), 1e-300) if s.size else np.zeros(0, dtype=bool)
        # centred = phi @ loadings.T with loadings = sqrt(n) V: unit-variance loadings
        phi = centred @ vt[keep].T / np.sqrt(len(table.sources))
        features = np.column_stack([np.ones(len(table.archs)), zbar, phi])
        return cls(table, features, z)

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


def _filled(z: np.ndarray, full: np.ndarray) -> np.ndarray:
    """``z`` with each NaN replaced by its conditional mean given the row's other values,
    under the normal distribution of the complete rows (one solve per pattern of missing
    sources)."""
    if full.all():
        return z
    mean = z[full].mean(axis=0)
    cov = np.cov(z[full], rowvar=False).reshape(z.shape[1], z.shape[1])
    cov += np.eye(len(cov)) * 1e-6 * max(float(np.trace(cov)) / len(cov), 1e-12)
    out = z.copy()
    gaps = np.isnan(z)
    patterns, which = np.unique(gaps[~full], axis=0, return_inverse=True)
    rows = np.flatnonzero(~full)
    for p, missing in enumerate(patterns):
        these = rows[which.ravel() == p]
        have = ~missing
        given = z[np.ix_(these, have)] - mean[have]
        gain = np.linalg.solve(cov[np.ix_(have, have)], cov[np.ix_(have, missing)])
        out[np.ix_(these, missing)] = mean[missing] + given @ gain
    return out


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


def _evidence(
    gram: np.ndarray, ay: np.ndarray, yy: float, k: int, prior: np.ndarray, noise: float
) -> float:
    """log N(y; 0, A diag(prior) A^T + noise I) up to a constant, in the weight space (p x p,
    whatever the number of measurements k): ``gram = A^T A``, ``ay = A^T y``, ``yy = y^T y``."""
    inner = np.diag(1.0 / prior) + gram / noise
    try:
        chol = np.linalg.cholesky(inner)
    except np.linalg.LinAlgError:
        return -np.inf
    white = np.linalg.solve(chol, ay / noise)
    quadratic = yy / noise - white @ white
    log_det = k * np.log(noise) + np.log(prior).sum() + 2 * np.log(np.diag(chol)).sum()
    return float(-0.5 * (quadratic + log_det))


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
    gram, ay, yy = a.T @ a, a.T @ y, float(y @ y)
    _, alpha, noise = max(
        (_evidence(gram, ay, yy, len(y), _prior(basis, al), nv), al, nv)
        for al in _ALPHAS
        for nv in _NOISES
    )
    prior = _prior(basis, alpha)
    cov = np.linalg.inv(gram / noise + np.diag(1.0 / prior))
    weights = cov @ ay / noise
    f = basis.features
    log_mean = f @ weights
    log_std = np.sqrt(np.einsum("ij,jk,ik->i", f, cov, f) + noise)
    return TransferFit(log_mean, log_std, float(alpha), float(noise))


#: Up to this many measured archs the cross-validation leaves one out; beyond, 10 folds.
LOO_MAX = 50
FOLDS = 10
#: The transfer model's weight against a linear model of the arch's own costs, in log space.
WEIGHTS = (1.0, 0.75, 0.5, 0.25, 0.0)
DESIGNS: tuple[Design, ...] = ("cost", "full")


@dataclass(frozen=True)
class Guard:
    """Which candidate answers: the transfer model, a linear model of the arch's own costs
    (``predictors.linear``: ``cost``, ``full``) or a blend ``w·log transfer + (1-w)·log
    linear``, by the mean absolute log error of held-out predictions: the first in order of
    preference (the transfer model, then less and less of it) within one standard error of the
    best. Measured on LatBench's 13 devices and this CPU's two forms (2 seeds): mean rho at
    k = 5, 10, 20: the transfer model alone 0.900, 0.917, 0.947; the lowest error 0.877, 0.933,
    0.964; this rule 0.900, 0.929, 0.964."""

    weight: float
    design: Design
    #: The served candidate's cross-validated metrics, and every candidate's.
    cv: dict[str, float | int | None]
    candidates: dict[str, dict[str, float | int | None]]

    @property
    def served(self) -> str:
        if self.weight >= 1.0:
            return "transfer"
        if self.weight <= 0.0:
            return f"linear:{self.design}"
        return f"blend:{self.weight:g}:{self.design}"


def _name(weight: float, design: Design) -> str:
    return Guard(weight, design, {}, {}).served


def guard(
    basis: TransferBasis | None,
    archs: Sequence[str],
    latency_ms: Sequence[float],
    features: Sequence[GraphFeatures],
) -> Guard:
    """Each measured arch predicted by every candidate fitted without it (leave-one-out up to
    ``LOO_MAX`` archs, else 10 folds; hyperparameters refitted too); the candidate with the
    lowest mean absolute log error is served. With ``MIN_SAMPLES`` archs or fewer nothing can
    be held out: the transfer model (the ``cost`` model without sources), no metrics but
    ``n``. ``basis`` None (no other device has the space): the linear models alone."""
    n = len(archs)
    if n <= MIN_SAMPLES:  # leaving one out would leave too few to fit
        return Guard(1.0 if basis is not None else 0.0, "cost", {"n": n}, {})
    y = np.asarray(latency_ms, dtype=np.float64)
    order = np.random.default_rng(0).permutation(n)
    folds = [np.array([i]) for i in range(n)] if n <= LOO_MAX else np.array_split(order, FOLDS)
    held_out: dict[str, np.ndarray] = {"transfer": np.zeros(n)}
    held_out.update({d: np.zeros(n) for d in DESIGNS})
    for held in folds:
        rest = np.setdiff1d(np.arange(n), held)
        if basis is not None:
            fit = fit_transfer(basis, [archs[j] for j in rest], y[rest].tolist())
            held_out["transfer"][held] = fit.log_mean[basis.rows([archs[j] for j in held])]
        for design in DESIGNS:
            linear = LinearModel.fit([features[j] for j in rest], y[rest], design)
            held_out[design][held] = np.log(linear([features[j] for j in held]))
    # in order of preference: the transfer model, then less and less of it
    candidates = [(WEIGHTS[0], DESIGNS[0])] + [(w, d) for w in WEIGHTS[1:] for d in DESIGNS]
    if basis is None:
        candidates = [(0.0, d) for d in DESIGNS]
    predicted = {(w, d): w * held_out["transfer"] + (1.0 - w) * held_out[d] for w, d in candidates}
    errors = {c: np.abs(predicted[c] - np.log(y)) for c in candidates}
    best = min(candidates, key=lambda c: float(errors[c].mean()))
    # one standard error: with few archs the held-out figures are noisy, and a candidate that
    # is not clearly better does not replace the one preferred
    bound = errors[best].mean() + errors[best].std(ddof=1) / np.sqrt(n)
    weight, design = next(c for c in candidates if errors[c].mean() <= bound)
    metrics = {
        c: regression_metrics(np.exp(p).tolist(), y.tolist()).to_dict()
        for c, p in predicted.items()
    }
    return Guard(
        weight,
        design,
        metrics[(weight, design)],
        {_name(w, d): m for (w, d), m in metrics.items()},
    )


def served_predictions(
    basis: TransferBasis,
    archs: Sequence[str],
    latency_ms: Sequence[float],
    chosen: Guard,
    table_features: Callable[[], Sequence[GraphFeatures]],
    features: Sequence[GraphFeatures],
) -> tuple[np.ndarray, np.ndarray]:
    """The served candidate fitted on every measured arch: log mean and log standard deviation
    for each table arch (the transfer model's predictive one, weighted; a linear model's own
    part adds its cross-validated log error). ``table_features`` is called only when a linear
    model takes part (the features of every table arch)."""
    fit = fit_transfer(basis, archs, latency_ms)
    if chosen.weight >= 1.0:
        return fit.log_mean, fit.log_std
    linear = LinearModel.fit(
        list(features), np.asarray(latency_ms, dtype=np.float64), chosen.design
    )
    log_linear = np.log(linear(table_features()))
    w = chosen.weight
    spread = float(chosen.cv.get("mape") or 0.0)  # the served candidate's relative error
    log_mean = w * fit.log_mean + (1.0 - w) * log_linear
    log_std = np.sqrt((w * fit.log_std) ** 2 + ((1.0 - w) * spread) ** 2)
    return log_mean, log_std


def choose(
    basis: TransferBasis,
    k: int,
    seed: int = 0,
    candidates: Sequence[str] | None = None,
    measured: Sequence[str] = (),
) -> list[str]:
    """``k`` archs to measure: k-means over the sources' features (without the constant), the
    candidate nearest each centre. ``candidates``: the archs that may be chosen (default: the
    whole table; an imported device: the archs it has). ``measured``: archs already measured,
    kept as fixed centres, so the new ones cover what they leave uncovered (a campaign's next
    round). Archs every source has are preferred (their features are measured, not filled in)
    while there are ``k`` of them to choose from."""
    pool = basis.rows(candidates) if candidates is not None else np.arange(len(basis.table.archs))
    fixed_rows = basis.rows(list(dict.fromkeys(measured)))
    rows = np.setdiff1d(pool, fixed_rows)
    complete = rows[basis.table.complete[rows]]
    if len(complete) >= k:
        rows = complete
    picked = cover(basis.features[rows, 1:], k, seed, basis.features[fixed_rows, 1:])
    return [basis.table.archs[int(rows[i])] for i in picked]


def own_points(features: Sequence[GraphFeatures]) -> np.ndarray:
    """Archs as points of their own costs and choices (the ``full`` linear design, each column
    standardised, constant ones dropped): what ``cover`` spreads the archs over when no other
    device has latencies for the space."""
    x = design_matrix(features, "full")
    spread = x.std(axis=0)
    varies = spread > 1e-12
    return np.asarray((x[:, varies] - x[:, varies].mean(axis=0)) / spread[varies])


def cover(points: np.ndarray, k: int, seed: int = 0, fixed: np.ndarray | None = None) -> list[int]:
    """``k`` of the ``points`` (their indices) that cover them: k-means (k-means++ start), the
    point nearest each centre. ``fixed``: centres that stay where they are (archs measured
    already), so the new ones go where those leave the points uncovered."""
    if k > len(points):
        raise PredictorError(f"{k} archs asked for, {len(points)} to choose from")
    fixed = np.zeros((0, points.shape[1])) if fixed is None else fixed
    rng = np.random.default_rng(seed)
    centres = list(fixed)
    if centres:
        nearest = ((points[:, None, :] - fixed[None]) ** 2).sum(axis=2).min(axis=1)
    else:
        first = points[rng.integers(len(points))]
        centres.append(first)
        nearest = ((points - first) ** 2).sum(axis=1)
    while len(centres) < len(fixed) + k:  # k-means++: each next centre drawn by its distance
        total = nearest.sum()
        pick = (
            rng.choice(len(points), p=nearest / total) if total > 0 else rng.integers(len(points))
        )
        centres.append(points[pick])
        nearest = np.minimum(nearest, ((points - points[pick]) ** 2).sum(axis=1))
    c = np.array(centres)
    for _ in range(_KMEANS_ITERATIONS):  # the fixed centres stay where the measured archs are
        label = _nearest_centre(points, c)
        moved = c.copy()
        for j in range(len(fixed), len(c)):
            if np.any(label == j):
                moved[j] = points[label == j].mean(axis=0)
        if np.allclose(moved, c):
            break
        c = moved
    chosen: list[int] = []
    for centre in c[len(fixed) :]:
        distance = ((points - centre) ** 2).sum(axis=1)
        distance[chosen] = np.inf
        chosen.append(int(np.argmin(distance)))
    return chosen


def _nearest_centre(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    distance = (
        (points**2).sum(axis=1)[:, None] - 2 * points @ centres.T + (centres**2).sum(axis=1)[None]
    )
    return np.asarray(np.argmin(distance, axis=1))


@dataclass(frozen=True)
class TransferPredictor(LatencyModel):
    """Kind ``transfer`` of ``latlab.latency_model``: the fitted posterior for each arch the
    sources cover, looked up by the space's encoding of the arch."""

    kind: ClassVar[str] = "transfer"

    space: str
    space_params: dict[str, Any]
    archs: tuple[str, ...]
    log_mean: np.ndarray
    log_std: np.ndarray
    #: Sources, samples, hyperparameters and cross-validated metrics.
    meta: dict[str, Any] = field(default_factory=dict)

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
                    "transfer predictor's source devices cover (at least half of them have)"
                )
            rows.append(row)
        index = np.asarray(rows, dtype=np.int64)
        mean = np.exp(self.log_mean[index].astype(np.float64))
        return Estimates(latency_ms=mean, uncertainty_ms=mean * self.log_std[index])

    def describe(self) -> dict[str, Any]:
        return {
            "training_config": {k: self.meta[k] for k in ("sources", "samples") if k in self.meta},
            "metrics": {k: self.meta[k] for k in ("served", "cv", "candidates") if k in self.meta},
        }

    def payload(self) -> bytes:
        header = {
            "format_version": FORMAT_VERSION,
            "space": self.space,
            "space_params": self.space_params,
            "meta": self.meta,
        }
        return write_npz(
            header,
            {
                "archs": np.array(self.archs, dtype=np.str_),
                "log_mean": self.log_mean,
                "log_std": self.log_std,
            },
        )

    @classmethod
    def from_payload(cls, data: bytes) -> Self:
        header, arrays = read_npz(data, "transfer predictor")
        try:
            archs = tuple(str(a) for a in arrays["archs"])
            log_mean, log_std = arrays["log_mean"], arrays["log_std"]
        except KeyError as exc:
            raise PredictorError(f"a malformed transfer predictor artifact: no {exc}") from exc
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
