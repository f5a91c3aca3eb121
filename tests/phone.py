"""One stand-in phone for the adb tests: its props, filesystem and log, and the stand-in adb
executable (tests/stand_in_adb.py) that replays it, installed by the ``phone`` fixture."""

from __future__ import annotations

import json
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.factories import shared_path

SERIAL = "R5CT1234ABC"
BINARY = "/data/local/tmp/benchmark_model"
PROPS = {
    "ro.product.model": "SM-G991B",
    "ro.product.manufacturer": "samsung",
    "ro.soc.model": "Exynos 2100",
    "ro.board.platform": "exynos2100",
    "ro.build.version.release": "14",
    "ro.product.cpu.abi": "arm64-v8a",
}


@dataclass
class Phone:
    adb: str
    state_file: Path
    fs: Path
    log: Path

    def update(self, **changes: object) -> None:
        state = json.loads(self.state_file.read_text())
        state.update(changes)
        self.state_file.write_text(json.dumps(state))

    def calls(self) -> list[list[str]]:
        return [json.loads(line) for line in self.log.read_text().splitlines()]


def install_phone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Phone:
    """A stand-in adb in ``tmp_path`` replaying one phone (the ``phone`` fixture)."""
    fixture = shared_path("fixtures/benchmark_model/xnnpack_op_profiling.txt")
    fs, log = tmp_path / "phone-fs", tmp_path / "adb-log.jsonl"
    (fs / BINARY.lstrip("/")).parent.mkdir(parents=True)
    (fs / BINARY.lstrip("/")).write_bytes(b"\x7fELF")
    log.write_text("")
    state_file = tmp_path / "phone.json"
    state = {
        "serial": SERIAL,
        "authorized": True,
        "props": PROPS,
        "thermal": 1,
        "fs": str(fs),
        "log": str(log),
        "benchmark_output": str(fixture),
    }
    state_file.write_text(json.dumps(state))
    script = Path(__file__).with_name("stand_in_adb.py")
    adb = tmp_path / "adb"
    adb.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    adb.chmod(adb.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("STAND_IN_ADB_STATE", str(state_file))
    return Phone(str(adb), state_file, fs, log)
