"""The thermal gate: before claiming its next job the agent waits until the device is cool
enough — a phone's Android thermal status (0 none … 6 shutdown, over adb), a host's hottest
thermal zone in °C (Linux sysfs) — so that a throttled device never produces a number."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ThermalGate", "host_temperature_c"]

log = logging.getLogger(__name__)

MILLIDEGREES = 1000.0


def host_temperature_c(root: Path = Path("/sys/class/thermal")) -> float | None:
    """The hottest thermal zone of this host in °C; None where the kernel exposes none."""
    readings = []
    for zone in sorted(root.glob("thermal_zone*")):
        try:
            readings.append(int((zone / "temp").read_text().strip()) / MILLIDEGREES)
        except (OSError, ValueError):
            continue
    return max(readings) if readings else None


@dataclass
class ThermalGate:
    #: The device's current reading; None where it cannot say (the gate then stays open).
    read: Callable[[], float | None]
    limit: float
    #: What the reading is, for the log ("thermal status", "°C").
    unit: str
    poll_s: float = 5.0

    def wait_until_cool(self, stop: threading.Event) -> float | None:
        """Block while the reading is above the limit (or until ``stop``); the last reading."""
        reading = self.read()
        while reading is not None and reading > self.limit and not stop.is_set():
            log.warning(
                "device too warm (%s %s > %s): waiting %.0f s before the next job",
                reading,
                self.unit,
                self.limit,
                self.poll_s,
            )
            stop.wait(self.poll_s)
            reading = self.read()
        return reading
