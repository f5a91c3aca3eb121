"""The hardware descriptor a desktop/Jetson agent reports: CPU, cores, RAM, OS, GPU, runtimes."""

from __future__ import annotations

import logging
import os
import platform
import shutil
import socket
import subprocess
from collections.abc import Iterable
from pathlib import Path

from latlab.agent.adb import Adb
from latlab.schemas import DeviceDescriptor, RuntimeInfo

__all__ = ["jetson_model", "probe_descriptor", "probe_phone_descriptor"]

log = logging.getLogger(__name__)


def probe_descriptor(runtimes: Iterable[RuntimeInfo], labels: dict[str, str]) -> DeviceDescriptor:
    return DeviceDescriptor(
        hostname=socket.gethostname()[:200],
        cpu_model=_cpu_model()[:200],
        cpu_arch=platform.machine(),
        cpu_cores=os.cpu_count() or 0,
        ram_bytes=_ram_bytes(),
        os=platform.platform()[:200],
        gpu=_nvidia_gpu() or jetson_model(),
        runtimes=list(runtimes),
        labels=labels,
    )


def probe_phone_descriptor(
    adb: Adb, runtimes: Iterable[RuntimeInfo], labels: dict[str, str]
) -> DeviceDescriptor:
    """A phone's descriptor from getprop, its CPU count and memory (the host it hangs off is
    the hostname)."""
    facts = adb.facts()
    return DeviceDescriptor(
        hostname=socket.gethostname()[:200],
        device_model=" ".join(x for x in (facts.manufacturer, facts.model) if x)[:200],
        soc=facts.soc[:200],
        serial=adb.serial[:200],
        cpu_model=facts.soc[:200],
        cpu_arch=facts.abi[:50],
        cpu_cores=adb.cpu_cores(),
        ram_bytes=adb.ram_bytes(),
        os=f"Android {facts.android}" if facts.android else "Android",
        runtimes=list(runtimes),
        labels=labels,
    )


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            # x86 says "model name"; many ARM kernels (Jetson) say "Hardware" or "Model"
            if key.strip() in ("model name", "Hardware", "Model") and value.strip():
                return value.strip()
    return platform.processor() or platform.machine()


def _ram_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def jetson_model(device_tree_model: Path = Path("/proc/device-tree/model")) -> str | None:
    """A Jetson has no nvidia-smi; its device tree names the board (and so its GPU)."""
    try:
        model = device_tree_model.read_bytes().rstrip(b"\x00").decode(errors="replace").strip()
    except OSError:
        return None
    return model[:200] if "jetson" in model.lower() else None


def _nvidia_gpu() -> str | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("nvidia-smi failed: %s", exc)
        return None
    first = out.strip().splitlines()
    return first[0].strip()[:200] if first else None
