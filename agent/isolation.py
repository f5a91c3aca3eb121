"""The timing core: pin the timing thread to its CPUs and see what else ran there.

A runner times a model inside ``timing_core(cpus)``: the calling thread (onnxruntime and LiteRT
compute on it with one thread) is pinned to ``cpus`` for the session, the warm-up, the timed
runs and the profiled pass, then put back. Meanwhile the CPUs' counters in ``/proc/stat`` are
read at both ends: the CPU time the CPUs spent outside this agent process (other processes,
the kernel's interrupts) and the time the hypervisor took from them (steal) are reported with
the measurement, so interference shows in the data, not only in the figures. (The process,
not the thread: a runtime's own worker threads, started inside the block, inherit the pin.)

``split_cpus`` gives a local lab its layout: the last CPU for the timing, the rest for the
server, the bench and the agent's other threads.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latlab.agent.errors import RunnerError

__all__ = [
    "HostWatch",
    "cpu_clock",
    "host_cpus",
    "keep_off",
    "pin_process",
    "split_cpus",
    "timing_core",
]

log = logging.getLogger(__name__)

PROC_STAT = Path("/proc/stat")
CPUFREQ = Path("/sys/devices/system/cpu")
#: /proc/stat counts in USER_HZ ticks.
TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
#: Fields of a ``cpuN`` line: user nice system idle iowait irq softirq steal (guest counted in
#: user already).
IDLE_FIELDS = (3, 4)
STEAL_FIELD = 7


def _allowed() -> set[int] | None:
    return os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None


def split_cpus() -> tuple[list[int], list[int]] | None:
    """(timing CPUs, the others) for a lab on this host: the last CPU this process may use for
    the timing, the rest for everything else; None on a single CPU (nothing to split) or where
    the platform cannot pin."""
    allowed = _allowed()
    if allowed is None or len(allowed) < 2:
        return None
    cpus = sorted(allowed)
    return cpus[-1:], cpus[:-1]


def pin_process(cpus: Sequence[int]) -> None:
    """Pin the calling thread, and so every thread and process it starts afterwards, to
    ``cpus`` (Linux affinity is per thread and inherited)."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus)


def host_cpus() -> set[int]:
    """The host's CPU ids (an agent started by a pinned parent inherits its narrower mask, and
    may still pin itself anywhere on the host)."""
    return set(range(os.cpu_count() or 1))


def keep_off(cpus: Sequence[int]) -> list[int]:
    """Pin the calling thread (and what it starts afterwards) to the host's CPUs other than
    ``cpus``; those CPUs, or [] where there are none left or the platform cannot pin."""
    others = sorted(host_cpus() - set(cpus)) if _allowed() is not None else []
    if others:
        pin_process(others)
    return others


@dataclass
class HostWatch:
    """What ran on the timing CPUs beside the agent, from ``start()`` to ``stop()``."""

    cpus: list[int] | None
    _stat0: list[int] | None = None
    _cpu_s0: float = 0.0
    _result: dict[str, Any] | None = None

    def start(self) -> None:
        self._stat0 = _cpu_ticks(self.cpus) if self.cpus else None
        self._cpu_s0 = time.process_time()

    def stop(self) -> dict[str, Any]:
        """The provenance block since ``start()`` (kept: a second call returns the same)."""
        if self._result is None:
            self._result = self._report()
        return self._result

    def lap(self) -> dict[str, Any]:
        """The provenance block since ``start()`` or the last lap, and a new lap begins (one
        per timing attempt)."""
        result = self._report()
        self.start()
        return result

    def _report(self) -> dict[str, Any]:
        """The CPUs, the host's load and CPU count, the timing CPU's clock and governor where
        Linux exposes them, and (pinned, on Linux) the share of the timing CPUs' time that went
        to anything else, and to the hypervisor (steal)."""
        result: dict[str, Any] = {"cpus": self.cpus, "host_cpus": os.cpu_count()}
        if hasattr(os, "getloadavg"):
            result["load_1m"] = round(os.getloadavg()[0], 2)
        result.update(cpu_clock(self.cpus[0] if self.cpus else 0))
        stat1 = _cpu_ticks(self.cpus) if self.cpus else None
        if self._stat0 is not None and stat1 is not None:
            total, idle, steal = (b - a for a, b in zip(self._stat0, stat1, strict=True))
            own = (time.process_time() - self._cpu_s0) * TICKS_PER_S
            if total > 0:
                # busy ticks not spent by this process; ticks are coarse (10 ms), so clamp
                other = max(0.0, total - idle - steal - own)
                result["other_busy_pct"] = round(100 * other / total, 2)
                result["steal_pct"] = round(100 * steal / total, 2)
        return result


def cpu_clock(cpu: int, root: Path = CPUFREQ) -> dict[str, Any]:
    """The CPU's current and maximum clock (MHz) and its governor, from Linux's cpufreq; empty
    where the kernel exposes none (most VMs)."""
    base = root / f"cpu{cpu}" / "cpufreq"
    found: dict[str, Any] = {}
    for key, name in (("freq_mhz", "scaling_cur_freq"), ("max_freq_mhz", "cpuinfo_max_freq")):
        with contextlib.suppress(OSError, ValueError):
            found[key] = int((base / name).read_text().strip()) / 1000  # kHz
    with contextlib.suppress(OSError):
        found["governor"] = (base / "scaling_governor").read_text().strip()[:40]
    return found


def _cpu_ticks(cpus: Sequence[int]) -> list[int] | None:
    """(total, idle, steal) ticks summed over ``cpus``; None where /proc/stat is not there."""
    try:
        lines = PROC_STAT.read_text().splitlines()
    except OSError:
        return None
    wanted = {f"cpu{c}" for c in cpus}
    total = idle = steal = 0
    for line in lines:
        name, _, rest = line.partition(" ")
        if name in wanted:
            fields = [int(x) for x in rest.split()]
            total += sum(fields[:8])
            idle += sum(fields[i] for i in IDLE_FIELDS)
            steal += fields[STEAL_FIELD] if len(fields) > STEAL_FIELD else 0
    return [total, idle, steal]


@contextlib.contextmanager
def timing_core(cpus: Sequence[int] | None) -> Iterator[HostWatch]:
    """Pin the calling thread to ``cpus`` (if given) for the block; yield the watch whose
    ``stop()`` the runner calls when its timed work is done (or that ends with the block)."""
    watch = HostWatch(list(cpus) if cpus else None)
    before = _allowed()
    pinned = bool(cpus) and before is not None
    if cpus and before is None:
        log.warning("CPU affinity is not supported on this platform; ignored")
        watch.cpus = None
    if pinned:
        try:
            os.sched_setaffinity(0, cpus)  # type: ignore[arg-type]
        except OSError as exc:
            raise RunnerError(f"cannot pin to CPUs {list(cpus or ())}: {exc}") from exc
    watch.start()
    try:
        yield watch
    finally:
        watch.stop()
        if pinned:
            os.sched_setaffinity(0, before)  # type: ignore[arg-type]
