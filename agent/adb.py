"""A phone over ``adb``, bound to one serial: shell, push, remove, and the facts the device
descriptor and the provenance need (getprop, thermal status). The adb runner builds on it.

adb's own failures become the agent's error types with a message a user can act on: no such
device, an unauthorised device (the RSA prompt on the phone), adb itself missing.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from latlab.agent.errors import RunnerError, RunnerUnavailable

__all__ = ["Adb", "PhoneFacts"]

_PROP = re.compile(r"^\[([^\]]+)\]:\s*\[(.*)\]$")
_THERMAL = re.compile(r"Thermal Status:\s*(\d+)")
_MEMTOTAL = re.compile(r"^MemTotal:\s*(\d+)\s*kB", re.MULTILINE)
KIB = 1024


@dataclass(frozen=True)
class PhoneFacts:
    """What getprop says about the phone (empty strings where a property is unset)."""

    model: str
    manufacturer: str
    soc: str
    android: str
    abi: str

    @classmethod
    def from_props(cls, props: dict[str, str]) -> PhoneFacts:
        def first(*keys: str) -> str:
            return next((props[k] for k in keys if props.get(k)), "")

        return cls(
            model=first("ro.product.model"),
            manufacturer=first("ro.product.manufacturer"),
            soc=first("ro.soc.model", "ro.board.platform", "ro.hardware"),
            android=first("ro.build.version.release"),
            abi=first("ro.product.cpu.abi"),
        )


class Adb:
    def __init__(self, serial: str, adb: str = "adb", timeout_s: float = 600.0) -> None:
        self.serial, self.adb, self.timeout_s = serial, adb, timeout_s

    def run(self, *args: str) -> str:
        """``adb -s SERIAL ARGS``; its stdout, or the agent's error for its failure."""
        command = [self.adb, "-s", self.serial, *args]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=self.timeout_s, check=False
            )
        except FileNotFoundError:
            raise RunnerUnavailable(
                f"adb is not installed here ({self.adb!r} not found): install the Android "
                "platform tools"
            ) from None
        except subprocess.TimeoutExpired:
            raise RunnerError(
                f"adb {' '.join(args)[:200]} ran past {self.timeout_s:.0f} s"
            ) from None
        if done.returncode != 0:
            raise self._error(done.stderr.strip() or done.stdout.strip(), args)
        return done.stdout

    def _error(self, text: str, args: tuple[str, ...]) -> RunnerError:
        lowered = text.lower()
        if "unauthorized" in lowered:
            return RunnerUnavailable(
                f"phone {self.serial} is unauthorised: accept the USB debugging prompt on it"
            )
        if re.search(r"device '[^']*' not found", lowered):
            return RunnerUnavailable(f"no phone {self.serial} on adb: {text[:300]}")
        if "no devices" in lowered or "offline" in lowered:
            return RunnerUnavailable(f"phone {self.serial} is not available: {text[:300]}")
        return RunnerError(f"adb {' '.join(args)[:200]} failed: {text[:2000]}")

    def shell(self, command: str) -> str:
        return self.run("shell", command)

    def push(self, local: Path, remote: str) -> None:
        self.run("push", str(local), remote)

    def remove(self, remote: str) -> None:
        self.shell(f"rm -f {remote}")

    def props(self) -> dict[str, str]:
        return {
            m.group(1): m.group(2)
            for line in self.shell("getprop").splitlines()
            if (m := _PROP.match(line.strip())) is not None
        }

    def facts(self) -> PhoneFacts:
        return PhoneFacts.from_props(self.props())

    def query(self, command: str) -> str | None:
        """The output of a query not every phone answers; None where it fails (adb's own
        failures, no phone or an unauthorised one, still raise)."""
        try:
            return self.shell(command)
        except RunnerUnavailable:
            raise
        except RunnerError:
            return None

    def cpu_cores(self) -> int:
        """The phone's CPU count (0 where it does not say)."""
        text = (self.query("nproc") or "").strip()
        return int(text) if text.isdigit() else 0

    def ram_bytes(self) -> int:
        """The phone's memory from /proc/meminfo (0 where it does not say)."""
        match = _MEMTOTAL.search(self.query("cat /proc/meminfo") or "")
        return int(match.group(1)) * KIB if match else 0

    def thermal_status(self) -> int | None:
        """Android's thermal status (0 none … 6 shutdown), None where the phone does not say."""
        match = _THERMAL.search(self.query("dumpsys thermalservice") or "")
        return int(match.group(1)) if match else None
