"""`latlab quickstart` runs the whole loop on this machine and prints real measurements."""

from __future__ import annotations

import io
from pathlib import Path

from latlab.demo_models import QUICKSTART_CNNS
from latlab.quickstart import run_quickstart
from latlab.schemas import RuntimeConfig


def test_quickstart_measures_every_demo_cnn_and_prints_the_table(tmp_path: Path) -> None:
    out = io.StringIO()
    config = RuntimeConfig(warmup_runs=2, warmup_s=0, timed_runs=5, timed_s=0, profile_runs=2)
    measurements = run_quickstart(tmp_path / "qs", out, config)
    text = out.getvalue()
    assert len(measurements) == len(QUICKSTART_CNNS)
    assert all(m.stats.n >= 5 and m.stats.median_ms > 0 and m.ops for m in measurements)
    for spec in QUICKSTART_CNNS:
        assert spec.name in text
    assert "median_ms" in text and "models measured" in text
    assert (tmp_path / "qs" / "latlab.db").is_file()
