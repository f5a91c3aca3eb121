"""Predictors that let the device's data decide, on real latencies measured on this CPU: the same
NB201 archs timed by a local agent as the pruned network and as the eager one (every op
computed), a predictor trained on each, asked about cells that differ only in a dead op."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from latlab.client import Client
from latlab.predictors.features import arch_features
from latlab.predictors.model import GcnConfig
from latlab.predictors.train import train_predictor
from latlab.runtimes.onnxruntime import OnnxRuntimeConfig
from latlab.schemas import DatasetCreate
from latlab.server.embedded import EmbeddedServer
from latlab.spaces import GraphForm
from latlab.spaces.nb201 import EDGES, Nb201
from tests.test_e2e import RunningAgent, start_agent

SPACE = Nb201()
#: Short, but a median of 15 runs of a 0.3-6 ms model is steady enough to tell 1.7x apart.
QUICK = OnnxRuntimeConfig(
    protocol="fixed", warmup_runs=3, warmup_s=0, timed_runs=15, timed_s=0, profile_ops=False
)
TRAIN = GcnConfig(
    hidden=32,
    layers=2,
    epochs=60,
    lr=3e-3,
    target="log",
    dropout=0.0,
    baseline="linear",
    folds=4,
    members=None,
    patience=15,
)
#: Cells whose node 2 is fed by none edges only: the op on 3<-2 computes on zeros. Pruned, a
#: 3x3 conv there and nothing there are the same network; eager, the conv is computed (on
#: this CPU 1.7x to 4x the time of the cell without it).
PROBES = (
    "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|nor_conv_1x1~1|{}~2|",
    "|avg_pool_3x3~0|+|none~0|none~1|+|nor_conv_1x1~0|skip_connect~1|{}~2|",
    "|skip_connect~0|+|none~0|none~1|+|nor_conv_3x3~0|avg_pool_3x3~1|{}~2|",
)


@pytest.fixture
def agent(live_server: EmbeddedServer, tmp_path: Path) -> Iterator[RunningAgent]:
    running = start_agent(live_server.url, tmp_path, name="cpu-0")
    yield running
    running.close()


def measured(client: Client, form: GraphForm, archs: list[str]) -> dict[str, float]:
    device = client.devices()[0]
    dataset = client.create_dataset(
        DatasetCreate(
            name=f"sample-{form}",
            space="nb201",
            archs=archs,
            device_ids=[device.id],
            config=QUICK,
            form=form,
        )
    )
    done = client.wait_dataset(dataset.id, timeout_s=600)
    assert done.form == form and done.progress.done == len(archs)
    return {r["arch"]: float(r["latency_ms"]) for r in client.dataset_rows(done.id, device.id)}


def dead_op_ratios(latency: dict[str, float]) -> list[float]:
    """Per probe: the predictor's latency with the dead conv over that without it."""
    archs = list(latency)
    predictor, _ = train_predictor(
        arch_features("nb201", {}, archs), [latency[a] for a in archs], TRAIN
    )
    pairs = [(p.format("nor_conv_3x3"), p.format("none")) for p in PROBES]
    predicted, _ = predictor.predict(
        arch_features("nb201", {}, [a for pair in pairs for a in pair])
    )
    return [float(predicted[2 * i] / predicted[2 * i + 1]) for i in range(len(pairs))]


@pytest.mark.slow
def test_a_predictor_learns_from_the_data_whether_dead_ops_cost_time(
    client: Client, agent: RunningAgent
) -> None:
    probes = {p.format(op) for p in PROBES for op in ("nor_conv_3x3", "none")}
    sample = [a.string for a in SPACE.sample(70, seed=11) if a.string not in probes]
    eager = measured(client, GraphForm.eager, sample)
    pruned = measured(client, GraphForm.pruned, sample)
    # the data: on the archs with dead ops the two forms really differ
    dead = [a for a in sample if SPACE.parse(a).live_edges != _present(a)]
    assert dead and np.median([eager[a] / pruned[a] for a in dead]) > 1.2

    eager_ratios = dead_op_ratios(eager)
    pruned_ratios = dead_op_ratios(pruned)
    # eager-form data: the dead conv costs time, and the cells rank by it
    assert all(r > 1.3 for r in eager_ratios), eager_ratios
    # pruned-form data: the dead conv changes nothing (isomorphic cells alike)
    assert all(abs(r - 1) < 0.15 for r in pruned_ratios), pruned_ratios


def _present(arch: str) -> frozenset[tuple[int, int]]:
    """The edges of ``arch`` that hold an op (not ``none``)."""
    return frozenset(e for e, op in zip(EDGES, SPACE.parse(arch).ops, strict=True) if op != 0)
