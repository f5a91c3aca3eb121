"""A dataset in plain rows: what the server hands to the format writers."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CANARY_FIELDS",
    "INDEX_NOTE",
    "QUALITY_FIELDS",
    "STAT_FIELDS",
    "ArchRow",
    "CanaryRow",
    "DatasetDump",
    "DeviceRow",
    "MeasurementRow",
    "OpRow",
    "file_stem",
]

#: What an ``arch_index`` means, per space (the datasheet and ``dataset.json`` say it).
INDEX_NOTE = {
    "nb201": "NAS-Bench-201's own index (its API's, HW-NAS-Bench's and HELP's)",
    "proxyless": "latlab's mixed-radix index of the block choices (block 0 most significant)",
}
#: The statistics beside the headline median, in ms (what ``MeasurementRow.stats`` holds).
STAT_FIELDS = ("mean_ms", "std_ms", "min_ms", "max_ms", "p10_ms", "p90_ms", "p99_ms", "iqr_ms")
#: How far to trust the headline (``latlab.quality``; what ``MeasurementRow.quality`` holds):
#: the verdict, the median's 95 % interval (ms), its half-width, the CV and drift (%).
QUALITY_FIELDS = (
    "verdict",
    "ci_low_ms",
    "ci_high_ms",
    "ci_halfwidth_pct",
    "cv_pct",
    "drift_pct",
)
#: The device canary around each measured row (``MeasurementRow.canary``): ``ok`` or
#: ``drifted`` (its window's drift past the campaign's limit), that drift (%), the device's
#: speed then against the campaign's reference (``latlab.quality.CanaryWindows.scale``) and
#: the median divided by it (the latency at the reference speed; the headline stays raw).
CANARY_FIELDS = ("canary", "canary_drift_pct", "canary_scale", "adjusted_ms")


@dataclass(frozen=True)
class ArchRow:
    position: int
    arch: str  # the space's canonical string
    arch_index: str  # decimal text: indices can exceed 64 bits
    vector: tuple[int, ...] | None  # the space's vector form (NB201: LatBench's key)
    model_id: str | None


@dataclass(frozen=True)
class DeviceRow:
    id: str
    name: str
    descriptor: dict[str, Any]


@dataclass(frozen=True)
class MeasurementRow:
    measurement_id: int
    arch: str
    device_id: str
    source: str  # measured | imported
    latency_ms: float  # the headline: the median of the samples, or the imported figure
    latency_s: float | None  # an imported figure as published, when published in seconds
    n: int
    stats: dict[str, float | None]  # mean/std/min/max/p10/p90/p99/iqr, in ms
    samples_ms: list[float] | None  # every timed run; None when the dump leaves them out
    runtime: str
    runtime_version: str
    provider: str
    threads: int
    protocol_version: str
    agent_version: str
    created_at: str
    #: Facts at measuring time that change the number: the timing CPU and what else ran on it
    #: (``host``), a GPU's IO binding, a phone's thermal status, an import's source.
    provenance: dict[str, Any] | None = None
    #: The verdict and interval (QUALITY_FIELDS); None values where nothing was assessed.
    quality: dict[str, Any] = field(default_factory=dict)
    #: The canary around it (CANARY_FIELDS); empty where no canary bounds it.
    canary: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CanaryRow:
    """One timing of a device's reference model during the campaign."""

    device_id: str
    measured_at: str
    median_ms: float
    ci_low_ms: float | None
    ci_high_ms: float | None
    verdict: str | None


@dataclass(frozen=True)
class OpRow:
    measurement_id: int
    seq: int
    node_name: str
    op_type: str
    provider: str | None
    dur_us: float
    n: int
    source_nodes: list[str]


@dataclass(frozen=True)
class DatasetDump:
    id: str
    name: str
    space: str
    space_params: dict[str, int]
    source: str
    config: dict[str, Any] | None
    provenance: dict[str, Any] | None
    archs: list[ArchRow]
    devices: list[DeviceRow]
    measurements: list[MeasurementRow]
    ops: list[OpRow] = field(default_factory=list)
    #: The graph form measured (``pruned``, ``eager``); None: unknown.
    form: str | None = None
    #: The device canaries that bound the campaign's measurements, per device in time order.
    canaries: list[CanaryRow] = field(default_factory=list)
    #: The campaign's drift limit (%) and re-measure rounds; None for an import.
    canary_limit_pct: float | None = None

    def metadata(self) -> dict[str, Any]:
        """What ``dataset.json`` in every export archive says (the importer reads the space)."""
        return {
            "id": self.id,
            "name": self.name,
            "space": self.space,
            "space_params": self.space_params,
            "source": self.source,
            "form": self.form,
            "index": INDEX_NOTE.get(self.space),
            "config": self.config,
            "provenance": self.provenance,
            "archs": len(self.archs),
            "devices": [d.name for d in self.devices],
            "measurements": len(self.measurements),
        }

    def device_files(self) -> dict[str, str]:
        """A file stem per device: its name made file-safe, unique within the dataset."""
        stems: dict[str, str] = {}
        used: set[str] = set()
        for device in self.devices:
            stem = file_stem(device.name)
            if stem in used:
                stem = f"{stem}-{device.id[:8]}"
            used.add(stem)
            stems[device.id] = stem
        return stems


def file_stem(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")
    return stem[:100] or "device"
