"""Training a device's predictor from what the server stores: gather the end-to-end medians of
its datasets (own campaigns and imported ones) of one graph form, build graph features, train,
plot, and register the result as the device's next version. What ``latlab train`` runs."""

from __future__ import annotations

import logging
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from latlab.client import Client
from latlab.latency_model import to_artifact
from latlab.predictors.errors import PredictorError
from latlab.predictors.features import arch_features
from latlab.predictors.model import GcnConfig, GcnPredictor
from latlab.predictors.plot import scatter_png
from latlab.predictors.train import TrainReport, train_predictor
from latlab.schemas import DatasetOut, PredictorOut
from latlab.spaces import GraphForm

__all__ = ["TrainingData", "TrainingRun", "train_for_device", "training_data"]

#: How an unknown graph form is written where a form is named.
UNKNOWN_FORM = "unknown"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingData:
    space: str
    space_params: dict[str, int]
    archs: list[str]  # the space's canonical strings
    latency_ms: list[float]  # median over datasets where an arch was measured more than once
    runtime: str
    dataset_ids: list[str]
    #: The graph form the latencies are of (``unknown`` for imports that did not say).
    form: str


@dataclass(frozen=True)
class TrainingRun:
    data: TrainingData
    predictor: GcnPredictor
    report: TrainReport
    plot_png: bytes
    registered: PredictorOut | None


def _form(d: DatasetOut) -> str:
    return d.form.value if d.form is not None else UNKNOWN_FORM


def training_data(
    client: Client,
    device_id: str,
    dataset_ids: Sequence[str] = (),
    form: GraphForm | str | None = None,
) -> TrainingData:
    """The device's measured (or imported) archs from ``dataset_ids``, or from every dataset
    the device is in; they must all be of one space and one graph form (``form`` picks one
    where the device has several: latencies of the pruned and the eager network are different
    numbers)."""
    device_id = client.device(device_id).id  # a name works too
    datasets = (
        [client.dataset(d) for d in dataset_ids]
        if dataset_ids
        else [d for d in client.datasets() if device_id in d.device_ids]
    )
    if form is not None:
        datasets = [d for d in datasets if _form(d) == str(form)]
    if not datasets:
        what = f" of form {form}" if form is not None else ""
        raise PredictorError(f"device {device_id} is in no dataset{what}: measure or import one")
    spaces = {(d.space, tuple(sorted(d.space_params.items()))) for d in datasets}
    if len(spaces) > 1:
        raise PredictorError(
            f"the datasets are of several spaces {sorted(spaces)}: pick one with --dataset"
        )
    forms = sorted({_form(d) for d in datasets})
    if len(forms) > 1:
        raise PredictorError(
            f"the device's datasets are of several graph forms ({', '.join(forms)}): "
            "pick one with --form or --dataset"
        )
    by_arch: dict[str, list[float]] = defaultdict(list)
    runtimes: Counter[str] = Counter()
    for d in datasets:
        for row in client.dataset_rows(d.id, device_id):
            by_arch[row["arch"]].append(float(row["latency_ms"]))
            runtimes[row["runtime"]] += 1
    if not by_arch:
        raise PredictorError(f"the datasets hold no measurement of device {device_id}")
    archs = sorted(by_arch)
    return TrainingData(
        space=datasets[0].space,
        space_params=dict(datasets[0].space_params),
        archs=archs,
        latency_ms=[statistics.median(by_arch[a]) for a in archs],
        runtime=runtimes.most_common(1)[0][0],
        dataset_ids=[d.id for d in datasets],
        form=forms[0],
    )


def train_for_device(
    client: Client,
    device_id: str,
    config: GcnConfig,
    *,
    dataset_ids: Sequence[str] = (),
    form: GraphForm | str | None = None,
    n_test: int = 0,
    split_seed: int = 0,
    register: bool = True,
    on_epoch: Callable[[int], None] | None = None,
) -> TrainingRun:
    """Train on the device's data (every arch, or all but ``n_test`` held out by
    ``split_seed``) and, with ``register``, upload it as the device's current predictor for its
    runtime. The metrics are cross-validated over the training folds, and on the held-out
    archs if any."""
    data = training_data(client, device_id, dataset_ids, form)
    device_id = client.device(device_id).id
    n = len(data.archs)
    if not 0 <= n_test < n:
        raise PredictorError(f"cannot hold {n_test} of {n} archs out: keep some to train on")
    test = (
        sorted(int(i) for i in np.random.default_rng(split_seed).permutation(n)[:n_test])
        if n_test
        else []
    )
    meta = {
        "device_id": device_id,
        "space": data.space,
        "space_params": data.space_params,
        "runtime": data.runtime,
        "form": data.form,
        "datasets": data.dataset_ids,
        "archs": n,
        "split": {"train": n - n_test, "test": n_test, "seed": split_seed},
        "config": asdict(config),
    }
    features = arch_features(data.space, data.space_params, data.archs)
    predictor, report = train_predictor(
        features, data.latency_ms, config, test=test, meta=meta, on_epoch=on_epoch
    )
    shown, where = (report.test, "held-out") if report.test is not None else (report.cv, "cv")
    rho = f"{shown.spearman:.3f}" if np.isfinite(shown.spearman) else "-"
    title = (
        f"{device_id[:12]} {data.space} ({data.form}): {shown.n} {where} archs, "
        f"{100 * shown.within_10pct:.1f}% within 10%, rho {rho}, served {report.served}"
    )
    plot = scatter_png(report.true_ms, report.predicted_ms, title)
    registered = None
    if register:
        registered = client.upload_predictor(
            to_artifact(predictor),
            device_id=device_id,
            runtime=data.runtime,
            space=data.space,
            space_params=data.space_params,
            training=meta,
            plot_png=plot,
        )
    return TrainingRun(data, predictor, report, plot, registered)
