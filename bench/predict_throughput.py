"""How fast does /v1/predict answer a search job?

A GCN (the ``latlab`` preset, trained briefly on a published LatBench device: its accuracy does
not matter here) is registered on an embedded server; then batches of 10,000 NAS-Bench-201
archs go through ``/v1/predict`` over real HTTP (JSON in and out, as the SDK sends them), next
to the raw forward pass of the same network on the same archs' features, in the same run.
Goals: >= 50,000 archs/s, and >= 0.8 x the raw forward rate.

The server answers an enumerable space (NAS-Bench-201: 15,625 archs) from a table of every
arch's prediction, computed in one batched pass on first use; that first call is timed apart.

    python bench/predict_throughput.py [--batch 10000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pickle
import secrets
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
from _lab import start_server

from latlab.client import Client
from latlab.latency_model import to_artifact
from latlab.predictors.features import GraphFeatures, arch_features
from latlab.predictors.model import GcnPredictor
from latlab.predictors.presets import PRESETS
from latlab.predictors.train import train_predictor
from latlab.spaces.nb201 import Nb201

LATBENCH = Path(__file__).resolve().parents[2] / "shared" / "data" / "latbench"
DEVICE_FILE = "mobile-gpu-snapdragon-855-adreno-640-int8.pickle"


def torch_forward_seconds(
    predictor: GcnPredictor, batches: list[list[GraphFeatures]]
) -> list[float]:
    """The same ensemble's forward pass in PyTorch, for the numpy-or-torch serving decision."""
    import torch

    from latlab.predictors.features import FEATURES, batch
    from latlab.predictors.gcn import Gcn

    cfg = predictor.config
    models = []
    for member in predictor.members:
        model = Gcn(FEATURES, cfg.hidden, cfg.layers, cfg.dropout).eval()
        model.load_state_dict({k: torch.from_numpy(v) for k, v in member.weights.items()})
        models.append((model, member.baseline))
    seconds = []
    for feats in batches:
        t0 = time.perf_counter()
        data = batch(feats)
        x, adj, live = (torch.from_numpy(a) for a in (data.x, data.adj, data.adj_live))
        logs = []
        with torch.no_grad():
            for model, baseline in models:
                log_ms = predictor.target.decode_log(model(x, adj, live).numpy())
                logs.append(log_ms + np.log(baseline(feats)) if baseline else log_ms)
        np.exp(np.mean(logs, axis=0))
        seconds.append(time.perf_counter() - t0)
    return seconds


@contextlib.contextmanager
def server_process(data_dir: Path) -> Iterator[tuple[str, str]]:
    """``latlab server`` in a process of its own, with a fresh API key."""
    api_key = secrets.token_urlsafe(16)
    env = {**os.environ, "LATLAB_DATA_DIR": str(data_dir), "LATLAB_API_KEYS": api_key}
    process, url = start_server(env)
    try:
        yield url, api_key
    finally:
        process.terminate()
        process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--train-epochs", type=int, default=10)
    args = parser.parse_args()

    space = Nb201()
    table = pickle.loads((LATBENCH / DEVICE_FILE).read_bytes())
    items = list(table.items())[:1000]
    archs = [space.from_vector(v).string for v, _ in items]
    config = replace(PRESETS["latlab"], epochs=args.train_epochs)
    predictor, _ = train_predictor(
        arch_features("nb201", {}, archs), [s * 1e3 for _, s in items], config, guard=False
    )
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, space.size, args.batch).tolist() for _ in range(args.rounds)]

    # the raw forward pass on precomputed features of the same archs
    indices = sorted({i for b in batches for i in b})
    features = dict(
        zip(
            indices, arch_features("nb201", {}, [space.from_index(i) for i in indices]), strict=True
        )
    )
    raw_s = []
    for b in batches:
        feats = [features[i] for i in b]
        t0 = time.perf_counter()
        predictor.predict(feats)
        raw_s.append(time.perf_counter() - t0)

    torch_s = torch_forward_seconds(predictor, [[features[i] for i in b] for b in batches])

    with (
        tempfile.TemporaryDirectory() as tmp,
        server_process(Path(tmp)) as (url, api_key),
        Client(url, api_key, timeout_s=600) as client,
    ):
        dataset = client.import_dataset([LATBENCH / DEVICE_FILE], "one device")
        [device_id] = dataset.device_ids
        client.upload_predictor(
            to_artifact(predictor), device_id=device_id, runtime="unknown", space="nb201"
        )
        t0 = time.perf_counter()
        client.predict(device_id, space="nb201", archs=[0])
        first_s = time.perf_counter() - t0
        api_s, api_str_s = [], []
        for b in batches:
            t0 = time.perf_counter()
            out = client.predict(device_id, space="nb201", archs=b)
            api_s.append(time.perf_counter() - t0)
            assert len(out.predictions) == len(b)
        strings = [[space.from_index(i).string for i in b] for b in batches]
        for b in strings:
            t0 = time.perf_counter()
            client.predict(device_id, space="nb201", archs=b)
            api_str_s.append(time.perf_counter() - t0)
        check = client.predict(device_id, space="nb201", archs=batches[0][:100])
        local, _ = predictor.predict([features[i] for i in batches[0][:100]])
        assert np.allclose([p.latency_ms for p in check.predictions], local, rtol=1e-4)

    def rate(seconds: list[float]) -> float:
        return float(args.batch / statistics.median(seconds))

    print(
        f"\n/v1/predict throughput, batches of {args.batch:,} NAS-Bench-201 archs, median of {args.rounds} rounds"
    )
    print(
        f"GCN: {config.layers} x {config.hidden} units, {len(predictor.members)} ensemble members; numpy on the server"
    )
    print(
        f"raw forward pass (features precomputed)  {rate(raw_s):>12,.0f} archs/s  (numpy, as served)"
    )
    print(
        f"the same in PyTorch (eval, no_grad)      {rate(torch_s):>12,.0f} archs/s  (why serving is numpy)"
    )
    print(
        f"/v1/predict, archs as indices           {rate(api_s):>12,.0f} archs/s  "
        f"({rate(api_s) / rate(raw_s):.2f} x raw; goal >= 50,000 and >= 0.8 x)"
    )
    print(
        f"/v1/predict, archs as strings           {rate(api_str_s):>12,.0f} archs/s  ({rate(api_str_s) / rate(raw_s):.2f} x raw)"
    )
    print(f"first call (builds the 15,625-arch table) {first_s:>10.2f} s")


if __name__ == "__main__":
    main()
