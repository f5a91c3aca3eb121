"""The thermal gate's readings: a host's hottest thermal zone from sysfs; a gate that holds
while the reading is above its limit and opens when it falls (or cannot be read)."""

from __future__ import annotations

import threading
from pathlib import Path

from latlab.agent.thermal import ThermalGate, host_temperature_c


def test_the_hottest_zone_is_the_host_temperature(tmp_path: Path) -> None:
    for zone, millidegrees in (("thermal_zone0", "41000"), ("thermal_zone1", "67500")):
        (tmp_path / zone).mkdir()
        (tmp_path / zone / "temp").write_text(f"{millidegrees}\n")
    (tmp_path / "thermal_zone2").mkdir()  # a zone that cannot be read is skipped
    assert host_temperature_c(tmp_path) == 67.5
    assert host_temperature_c(tmp_path / "absent") is None


def test_the_gate_holds_while_hot_and_opens_when_cool() -> None:
    readings = iter([80.0, 75.0, 62.0, 50.0])
    seen: list[float | None] = []

    def read() -> float | None:
        seen.append(next(readings))
        return seen[-1]

    gate = ThermalGate(read, limit=65.0, unit="°C", poll_s=0.01)
    assert gate.wait_until_cool(threading.Event()) == 62.0
    assert seen == [80.0, 75.0, 62.0]
    assert ThermalGate(lambda: None, 65.0, "°C").wait_until_cool(threading.Event()) is None
    stopped = threading.Event()
    stopped.set()
    assert ThermalGate(lambda: 99.0, 65.0, "°C").wait_until_cool(stopped) == 99.0
