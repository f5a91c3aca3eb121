"""`latlab quickstart` runs the whole loop on this machine and prints real measurements."""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import pytest

from latlab.lab.quickstart import run_quickstart
from latlab.runtimes.onnxruntime import OnnxRuntimeConfig
from latlab.schemas import DatasetFormat
from latlab.spaces.nb201 import Nb201


@pytest.mark.slow
def test_quickstart_measures_a_nb201_sample_and_exports_it(tmp_path: Path) -> None:
    out = io.StringIO()
    config = OnnxRuntimeConfig(
        protocol="fixed", warmup_runs=2, warmup_s=0, timed_runs=5, timed_s=0, profile_runs=2
    )
    result = run_quickstart(tmp_path / "qs", out, config, n_archs=6, seed=3)
    text = out.getvalue()

    assert result.dataset.progress.done == 6 and result.dataset.state == "done"
    assert {r.arch for r in result.archs} == {a.string for a in Nb201().sample(6, seed=3)}
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
    assert result.exports[DatasetFormat.csv].read_text().count("\n") == 7
    # LUTs from 3 archs, checked on the other 3, beside the FLOPs line
    assert [a.predictor for a in result.accuracy] == [
        "LUT measured-ops",
        "LUT micro-models",
        "GCN (latlab preset)",
        "FLOPs-linear",
    ]
    assert all(a.metrics.n == 3 and a.metrics.rmse_ms >= 0 for a in result.accuracy)
    assert "held-out archs" in text and "within 10%" in text
    assert (tmp_path / "qs" / "latlab.db").is_file()

    # the agent timed in a process of its own, on the last CPU; the test's thread is given back
    import pyarrow.parquet as pq

    with zipfile.ZipFile(result.exports[DatasetFormat.parquet]) as archive:
        rows = pq.read_table(io.BytesIO(archive.read("measurements.parquet"))).to_pylist()
    usable = sorted(os.sched_getaffinity(0))
    timing = [usable[-1]] if len(usable) > 1 else None
    assert all(json.loads(r["provenance"])["host"]["cpus"] == timing for r in rows)
    assert f"timing on CPU {timing}" in text or timing is None
