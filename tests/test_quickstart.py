"""`latlab quickstart` runs the whole loop on this machine and prints real measurements."""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import pytest

from latlab.lab.quickstart import MIN_ARCHS, ArchResult, covering_split, run_quickstart
from latlab.runtimes.onnxruntime import OnnxRuntimeConfig
from latlab.schemas import DatasetFormat
from latlab.spaces.nb201 import Nb201


@pytest.mark.slow
def test_quickstart_measures_a_nb201_sample_and_exports_it(tmp_path: Path) -> None:
    out = io.StringIO()
    config = OnnxRuntimeConfig(
        protocol="fixed", warmup_runs=2, warmup_s=0, timed_runs=5, timed_s=0, profile_runs=2
    )
    result = run_quickstart(tmp_path / "qs", out, config, n_archs=8, seed=3)
    text = out.getvalue()

    assert result.dataset.progress.done == 8 and result.dataset.state == "done"
    assert {r.arch for r in result.archs} == {a.string for a in Nb201().sample(8, seed=3)}
    assert all(r.n >= 5 and r.median_ms > 0 and r.ops_sum_ms > 0 for r in result.archs)
    assert [r.median_ms for r in result.archs] == sorted(r.median_ms for r in result.archs)
    for r in result.archs:
        assert r.arch in text
    assert "median_ms" in text and "Spearman rho(MACs, latency)" in text

    with zipfile.ZipFile(result.exports[DatasetFormat.latbench]) as archive:
        table = pickle.loads(archive.read("local-cpu.pickle"))
    assert sorted(s * 1000 for s in table.values()) == pytest.approx(
        [r.median_ms for r in result.archs]
    )
    assert result.exports[DatasetFormat.csv].read_text().count("\n") == 9
    # LUTs from half the archs (and any whose kernels the other half lacks), checked on the
    # rest, beside the FLOPs line
    _, held_out = covering_split(sorted(result.archs, key=lambda r: r.index), "onnxruntime")
    assert [a.predictor for a in result.accuracy] == [
        "LUT measured-ops",
        "LUT micro-models",
        "GCN (latlab preset)",
        "transfer (LatBench)",
        "FLOPs-linear",
    ]
    assert len(held_out) >= 3
    assert all(a.metrics.n == len(held_out) and a.metrics.rmse_ms >= 0 for a in result.accuracy)
    assert "held-out archs" in text and "within 10%" in text
    assert "transfer importing 13 LatBench devices as sources" in text
    assert "local archs + 13 devices: serves" in text
    assert (tmp_path / "qs" / "latlab.db").is_file()

    # the agent timed in a process of its own, on the last CPU; the test's thread is given back
    import pyarrow.parquet as pq

    with zipfile.ZipFile(result.exports[DatasetFormat.parquet]) as archive:
        rows = pq.read_table(io.BytesIO(archive.read("measurements.parquet"))).to_pylist()
    usable = sorted(os.sched_getaffinity(0))
    timing = [usable[-1]] if len(usable) > 1 else None
    assert all(json.loads(r["provenance"])["host"]["cpus"] == timing for r in rows)
    assert f"timing on CPU {timing}" in text or timing is None


@pytest.mark.slow
def test_quickstart_without_the_published_files_says_so_and_goes_on(tmp_path: Path) -> None:
    out = io.StringIO()
    config = OnnxRuntimeConfig(
        protocol="fixed", warmup_runs=2, warmup_s=0, timed_runs=5, timed_s=0, profile_runs=2
    )
    result = run_quickstart(tmp_path / "qs", out, config, n_archs=8, latbench=tmp_path / "none")
    assert "transfer skipped: no LatBench .pickle files in" in out.getvalue()
    assert "transfer (LatBench)" not in [a.predictor for a in result.accuracy]


def _kernel_types(arch: str) -> set[str]:
    from latlab.lut.fusion import fuse
    from latlab.runtimes import runtimes

    nb201 = Nb201()
    rules = runtimes()["onnxruntime"].fusion
    assert rules is not None
    return {k.op_type for k in fuse(nb201.graph(nb201.parse(arch)), rules) if k.costs_time}


@pytest.mark.parametrize("seed", range(12))
def test_the_training_half_covers_every_kernel_type_of_the_held_out_archs(seed: int) -> None:
    # a LUT prices a kernel type it has no entry of only by a fallback of that type: a held-out
    # arch with a type no training arch has would be a 422 after minutes of measuring
    archs = [
        ArchResult(a.index, a.string, "m", 0, 1.0, 1.0, 1.0, 1, 1.0, "ok", None)
        for a in sorted(Nb201().sample(MIN_ARCHS, seed), key=lambda a: a.index)
    ]
    train, held_out = covering_split(archs, "onnxruntime")
    assert sorted(r.index for r in train + held_out) == [r.index for r in archs]
    covered = set().union(*(_kernel_types(r.arch) for r in train))
    assert all(_kernel_types(r.arch) <= covered for r in held_out)
    assert len(held_out) >= 2  # something to score on (Spearman needs two)
