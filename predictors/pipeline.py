"""Training a device's predictor from what the server stores: gather the end-to-end medians of
its datasets (own campaigns and imported ones), build graph features, train, plot, and
register the result as the device's next version. What ``latlab train`` runs."""

from __future__ import annotations

import logging
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from latlab.client import Client
from latlab.schemas import PredictorOut
from latlab.spaces import get_space
from predictors.errors import PredictorError
from predictors.features import GraphFeatures, graph_features
from predictors.model import GcnConfig, GcnPredictor
from predictors.plot import scatter_png
from predictors.train import TrainReport, split_indices, train_gcn

__all__ = ["TrainingData", "TrainingRun", "train_for_device", "training_data"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingData:
    space: str
    space_params: dict[str, int]
    archs: list[str]  # the space's canonical strings
    latency_ms: list[float]  # median over datasets where an arch was measured more than once
    runtime: str
    dataset_ids: list[str]


@dataclass(frozen=True)
class TrainingRun:
    data: TrainingData
    predictor: GcnPredictor
    report: TrainReport
    plot_png: bytes
    registered: PredictorOut | None


def training_data(client: Client, device_id: str, dataset_ids: Sequence[str] = ()) -> TrainingData:
    """The device's measured (or imported) archs from ``dataset_ids``, or from every dataset
    the device is in; they must all be of one space."""
    datasets = (
        [client.dataset(d) for d in dataset_ids]
        if dataset_ids
        else [d for d in client.datasets() if device_id in d.device_ids]
    )
    if not datasets:
        raise PredictorError(f"device {device_id} is in no dataset: measure or import one first")
    spaces = {(d.space, tuple(sorted(d.space_params.items()))) for d in datasets}
    if len(spaces) > 1:
        raise PredictorError(
            f"the datasets are of several spaces {sorted(spaces)}: pick one with --dataset"
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
    )


def features_of(
    space_name: str, space_params: dict[str, int], archs: Sequence[str]
) -> list[GraphFeatures]:
    space = get_space(space_name, **space_params)
    return [graph_features(space.predictor_graph(space.parse(a))) for a in archs]


def train_for_device(
    client: Client,
    device_id: str,
    config: GcnConfig,
    *,
    dataset_ids: Sequence[str] = (),
    n_train: int | None = None,
    n_val: int | None = None,
    split_seed: int = 0,
    register: bool = True,
    on_epoch: Callable[[int], None] | None = None,
) -> TrainingRun:
    """Train on the device's data (default split: 80 % train, 10 % validation, 10 % held out)
    and, with ``register``, upload it as the device's current predictor for its runtime."""
    data = training_data(client, device_id, dataset_ids)
    n = len(data.archs)
    n_train = n_train if n_train is not None else max(1, int(0.8 * n))
    n_val = n_val if n_val is not None else max(1, int(0.1 * n))
    split = split_indices(n, n_train, n_val, split_seed)
    meta = {
        "device_id": device_id,
        "space": data.space,
        "space_params": data.space_params,
        "runtime": data.runtime,
        "datasets": data.dataset_ids,
        "archs": n,
        "split": {"train": n_train, "val": n_val, "test": n - n_train - n_val, "seed": split_seed},
        "config": asdict(config),
    }
    features = features_of(data.space, data.space_params, data.archs)
    predictor, report = train_gcn(features, data.latency_ms, config, split, meta, on_epoch)
    title = (
        f"{device_id[:12]} {data.space}: {report.test.n} held-out archs, "
        f"{100 * report.test.within_10pct:.1f}% within 10%, rho {report.test.spearman:.3f}"
    )
    plot = scatter_png(report.true_ms, report.predicted_ms, title)
    registered = None
    if register:
        registered = client.upload_predictor(
            predictor.to_bytes(),
            device_id=device_id,
            runtime=data.runtime,
            space=data.space,
            space_params=data.space_params,
            training=meta,
            plot_png=plot,
        )
    return TrainingRun(data, predictor, report, plot, registered)
