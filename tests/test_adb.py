"""A phone over adb, against a stand-in ``adb`` executable (tests/stand_in_adb.py) that
replays one phone: descriptor facts, thermal status, push and cleanup, benchmark_model's real
output, and adb's failures (no device, unauthorised, adb or the binary missing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from latlab.agent.adb import Adb, PhoneFacts
from latlab.agent.errors import RunnerError, RunnerUnavailable
from latlab.agent.runners.benchmark_output import parse_benchmark_output
from tests.phone import BINARY, PROPS, SERIAL, Phone


def test_the_descriptor_facts_come_from_getprop_and_the_thermal_service(phone: Phone) -> None:
    adb = Adb(SERIAL, phone.adb)
    assert adb.facts() == PhoneFacts("SM-G991B", "samsung", "Exynos 2100", "14", "arm64-v8a")
    assert adb.thermal_status() == 1
    assert all(call[:2] == ["-s", SERIAL] for call in phone.calls())
    # without ro.soc.model the board platform names the SoC
    props = {k: v for k, v in PROPS.items() if k != "ro.soc.model"}
    assert PhoneFacts.from_props(props).soc == "exynos2100"


def test_a_pushed_model_runs_under_benchmark_model_and_is_removed(
    phone: Phone, tmp_path: Path
) -> None:
    adb = Adb(SERIAL, phone.adb)
    model = tmp_path / "m.tflite"
    model.write_bytes(b"....TFL3")
    remote = "/data/local/tmp/latlab-m.tflite"
    adb.push(model, remote)
    assert (phone.fs / remote.lstrip("/")).read_bytes() == b"....TFL3"
    out = parse_benchmark_output(
        adb.shell(f"{BINARY} --graph={remote} --num_threads=1 --enable_op_profiling=true")
    )
    assert out.runs is not None and out.runs.count == 64 and len(out.ops) == 4
    adb.remove(remote)
    assert not (phone.fs / remote.lstrip("/")).exists()
    assert phone.calls()[0] == ["-s", SERIAL, "push", str(model), remote]


def test_adb_failures_become_errors_a_user_can_act_on(phone: Phone, tmp_path: Path) -> None:
    with pytest.raises(RunnerUnavailable, match="no phone OTHER"):
        Adb("OTHER", phone.adb).props()
    with pytest.raises(RunnerUnavailable, match="not installed"):
        Adb(SERIAL, str(tmp_path / "no-such-adb")).props()
    adb = Adb(SERIAL, phone.adb)
    with pytest.raises(RunnerError, match="Failed to load model") as missing_model:
        adb.shell(f"{BINARY} --graph=/data/local/tmp/absent.tflite")
    assert not isinstance(missing_model.value, RunnerUnavailable)
    (phone.fs / BINARY.lstrip("/")).unlink()
    with pytest.raises(RunnerError, match="benchmark_model: not found"):
        adb.shell(f"{BINARY} --graph=/data/local/tmp/absent.tflite")
    phone.update(authorized=False)
    with pytest.raises(RunnerUnavailable, match="unauthorised"):
        adb.props()
