"""How fast does /v1/predict answer archs of the layer-wise spaces (proxyless, fbnet, ofa)?

Spaces too large to enumerate get no table: every request's archs are new. For each space:

- a LUT (kind ``lut``; entries for the kernels of the space's covering archs, each one's latency
  made up from its FLOPs and bytes: the accuracy does not matter here) registered for a device,
  then batches of ``--batch`` archs never asked before, as strings, through ``/v1/predict`` over
  real HTTP, next to the same model answering in-process as the server does (the strings read
  in bulk into segment numbers, ``Layerwise.segment_numbers``, and summed from the segment
  sums, ``lut.layerwise``) and through the archs' graphs (the path before it);
- a GCN (the ``latlab`` preset's size: 3 members, 4 x 64 units, random weights) the same way, on
  a batch of ``--gcn-batch`` archs, next to the same model in-process (``predictors.layerwise``:
  features from pieces, the sparse pass) and the dense forward pass on precomputed features
  (the graph path's network part), with its FLOPs per arch against this machine's measured
  float32 matmul rate.

Goals (issue 19): >= 50,000 archs/s through /v1/predict and >= 0.8 x the raw rate.

    python bench/predict_layerwise.py [--batch 10000] [--rounds 3] [--gcn-batch 1000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from predict_throughput import server_process

from latlab.client import Client
from latlab.latency_model import to_artifact
from latlab.lut.fusion import fuse
from latlab.lut.model import LutModel
from latlab.lut.table import Calibration, LookupTable, LutEntry
from latlab.predictors.features import FEATURES, arch_features
from latlab.predictors.model import GcnConfig, GcnPredictor, Member, TargetScale
from latlab.runtimes import rules_for
from latlab.schemas import LutSource
from latlab.spaces import get_space
from latlab.spaces.base import Layerwise

SPACES: dict[str, dict[str, Any]] = {"proxyless": {}, "fbnet": {}, "ofa": {}}


def made_up_lut(space_name: str) -> LookupTable:
    space = get_space(space_name)
    assert isinstance(space, Layerwise)
    entries = {}
    for arch in space.covering():
        for k in fuse(space.graph(arch), rules_for("onnxruntime")):
            if k.costs_time:
                us = 1.0 + k.cost.flops / 4e3 + k.cost.bytes_moved / 1e4
                entries[k.key] = LutEntry(
                    k.key, k.op_type, us, 0.0, 1, k.cost.flops, k.cost.bytes_moved
                )
    return LookupTable("onnxruntime", LutSource.micro_models, entries, Calibration(1.1, 0.5, 0.1))


def random_gcn(config: GcnConfig, members: int = 3) -> GcnPredictor:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(members):
        weights: dict[str, np.ndarray] = {}
        width = FEATURES
        for i in range(config.layers):
            weights[f"convs.{i}.weight"] = rng.normal(0, 0.1, (2 * width, config.hidden))
            weights[f"convs.{i}.bias"] = np.zeros(config.hidden)
            weights[f"norms.{i}.weight"] = np.ones(config.hidden)
            weights[f"norms.{i}.bias"] = np.zeros(config.hidden)
            width = config.hidden
        weights["head.weight"] = rng.normal(0, 0.1, (1, config.hidden))
        weights["head.bias"] = np.zeros(1)
        out.append(Member({k: v.astype(np.float32) for k, v in weights.items()}, None))
    return GcnPredictor(config, TargetScale("log", 0.0, 1.0), tuple(out), None, 1.0)


def gcn_flops_per_arch(config: GcnConfig, members: int, padded: int) -> float:
    """The dense forward pass as served: per layer two adjacency products (N x N x width) and
    the linear layer (N x 2 width x hidden), per member."""
    total, width = 0.0, FEATURES
    for _ in range(config.layers):
        total += 2 * 2 * padded * padded * width + 2 * padded * 2 * width * config.hidden
        width = config.hidden
    return members * total


def matmul_gflops() -> float:
    a = np.random.default_rng(0).standard_normal((2048, 2048)).astype(np.float32)
    a @ a
    t0 = time.perf_counter()
    for _ in range(5):
        a @ a
    return 5 * 2 * 2048**3 / (time.perf_counter() - t0) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gcn-batch", type=int, default=1000)
    args = parser.parse_args()
    config = GcnConfig(hidden=64, layers=4, dropout=0.0, target="log")
    gcn = random_gcn(config)
    peak = matmul_gflops()
    lines = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        server_process(Path(tmp)) as (url, api_key),
        Client(url, api_key, timeout_s=1800) as client,
    ):
        for name, params in SPACES.items():
            space = get_space(name, **params)
            csv = f"space,arch,device,latency_ms\n{name},{space.encode(space.example())},{name}-dev,1.0\n"
            [device_id] = client.import_dataset([(f"{name}.csv", csv.encode())], name).device_ids
            t0 = time.perf_counter()
            lut = LutModel(made_up_lut(name))
            built_s = time.perf_counter() - t0
            client.upload_predictor(to_artifact(lut), device_id=device_id, runtime="x", space=name)
            rounds = [
                [space.encode(a) for a in space.sample(args.batch, seed=100 + r)]
                for r in range(args.rounds)
            ]
            client.predict(device_id, space=name, archs=rounds[0][:10])  # builds the sums
            api = []
            for archs in rounds:
                t0 = time.perf_counter()
                out = client.predict(device_id, space=name, archs=list[str | int](archs))
                api.append(time.perf_counter() - t0)
                assert len(out.predictions) == len(archs)
            parsed = [space.parse(a) for a in rounds[0]]
            lut.predict_archs(name, params, parsed[:1])  # builds this copy's sums
            local = []
            for archs in rounds:  # as served
                t0 = time.perf_counter()
                fast = lut.predict_items(name, params, list[str | int](archs))
                local.append(time.perf_counter() - t0)
            fast_s = statistics.median(local)
            fast = lut.predict_items(name, params, list[str | int](rounds[0]))
            few = parsed[:200]
            t0 = time.perf_counter()
            slow = lut.predict_graphs([space.graph(a) for a in few])
            slow_s = time.perf_counter() - t0
            assert np.allclose(fast.latency_ms[:200], slow.latency_ms, rtol=1e-9)
            served = np.array([p.latency_ms for p in out.predictions])
            assert np.allclose(
                served,
                lut.predict_archs(name, params, [space.parse(a) for a in rounds[-1]]).latency_ms,
            )
            rate = args.batch / statistics.median(api)
            lines.append(
                f"{name:<10} LUT  /v1/predict {rate:>9,.0f} archs/s   in-process (read in bulk + sums) "
                f"{args.batch / fast_s:>9,.0f}/s ({rate / (args.batch / fast_s):.2f} x)   "
                f"graph path {len(few) / slow_s:>6,.0f}/s   (sums built in {built_s:.1f} s)"
            )

            # the GCN as served today: each arch's graph and features, then the dense pass
            gcn_version = client.upload_predictor(
                to_artifact(gcn), device_id=device_id, runtime="y", space=name, current=True
            ).id
            fresh = [space.encode(a) for a in space.sample(args.gcn_batch, seed=999)]
            warm = [space.encode(space.example())]  # the first request builds the pieces
            client.predict(device_id, space=name, archs=list[str | int](warm), version=gcn_version)
            gcn.predict_archs(name, params, [space.example()])
            t0 = time.perf_counter()
            client.predict(device_id, space=name, archs=list[str | int](fresh), version=gcn_version)
            gcn_api_s = time.perf_counter() - t0
            parsed_fresh = [space.parse(a) for a in fresh]
            t0 = time.perf_counter()
            gcn.predict_archs(name, params, parsed_fresh)  # pieces, sparse (what is served)
            pieces_s = time.perf_counter() - t0
            feats = arch_features(name, params, fresh)
            t0 = time.perf_counter()
            gcn.predict(feats)
            raw_s = time.perf_counter() - t0
            nodes = float(np.mean([f.nodes for f in feats]))
            padded = max(f.nodes for f in feats)
            flops = gcn_flops_per_arch(config, len(gcn.members), padded)
            raw_rate = args.gcn_batch / raw_s
            lines.append(
                f"{'':<10} GCN  /v1/predict {args.gcn_batch / gcn_api_s:>9,.0f} archs/s   in-process "
                f"(pieces, sparse) {args.gcn_batch / pieces_s:>7,.0f}/s   dense forward on "
                f"precomputed features {raw_rate:>5,.0f}/s: {nodes:.0f} nodes (padded {padded}), "
                f"{flops / 1e6:.0f} MFLOP/arch, {raw_rate * flops / 1e9:.0f} GFLOP/s of {peak:.0f}"
            )
    print(
        f"\n/v1/predict on archs never asked before, median of {args.rounds} rounds of {args.batch:,} (LUT), one of {args.gcn_batch:,} (GCN)"
    )
    for line in lines:
        print(line)
    print(
        f"goal: >= 50,000 archs/s and >= 0.8 x the in-process rate; float32 matmul here {peak:.0f} GFLOP/s"
    )


if __name__ == "__main__":
    main()
