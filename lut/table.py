"""A lookup table: kernel key -> latency statistics, the calibration that turns a sum of
entries into a model's latency, and the per-op-type fallback for keys it lacks. Stored and
exported as JSON (with its config embedded); exported as YAML in the OFA/ProxylessNAS style."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from latlab.lut.errors import LutError
from latlab.schemas import LutSource
from latlab.untrusted import excerpt

__all__ = [
    "FORMAT_VERSION",
    "Calibration",
    "LookupTable",
    "LutEntry",
    "LutSource",
    "TypeFit",
]

FORMAT_VERSION = 1


@dataclass(frozen=True)
class LutEntry:
    key: str
    op_type: str  # the fused chain, e.g. "Conv+BatchNormalization+Relu"
    median_us: float
    iqr_us: float
    n: int  # kernel instances (measured-ops) or timed runs (micro-models) behind the median
    flops: int
    bytes_moved: int


@dataclass(frozen=True)
class Calibration:
    """latency_ms = scale * sum(entries, us) / 1000 - per_kernel_us * kernels / 1000
    + constant_ms, fitted on whole models measured on the device (relative least squares).
    ``scale`` is what a kernel pays inside a network beyond its entry (activations evicted
    between kernels); ``per_kernel_us`` takes out what each entry carries that a kernel inside
    a network does not pay (a micro-model's session call, the profiler's own cost per kernel);
    ``constant_ms`` is the per-run cost of the whole model (input/output copies, the session
    call). Tables written before the scale existed read as scale 1."""

    scale: float = 1.0
    per_kernel_us: float = 0.0
    constant_ms: float = 0.0
    n_models: int = 0
    #: On the calibration models themselves (in-sample).
    rmse_ms: float | None = None
    within_10pct: float | None = None


@dataclass(frozen=True)
class TypeFit:
    """Fallback for a key missing from the table: latency of a kernel of this op type from its
    FLOPs and bytes moved, least squares over the table's entries of that type."""

    op_type: str
    intercept_us: float
    us_per_mflop: float
    us_per_mb: float
    n: int

    def estimate_us(self, flops: int, bytes_moved: int) -> float:
        value = (
            self.intercept_us + self.us_per_mflop * flops / 1e6 + self.us_per_mb * bytes_moved / 1e6
        )
        return max(value, 0.0)


@dataclass(frozen=True)
class LookupTable:
    rules: str  # fusion rules it is keyed by (lut.fusion.RULES)
    source: LutSource
    entries: dict[str, LutEntry]
    calibration: Calibration = Calibration()
    fallback: dict[str, TypeFit] = field(default_factory=dict)
    #: What it was built for and from: device, runtime config, space, models; embedded in exports.
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "rules": self.rules,
            "source": self.source.value,
            "meta": self.meta,
            "calibration": asdict(self.calibration),
            "fallback": {k: asdict(v) for k, v in sorted(self.fallback.items())},
            "entries": {k: _entry_json(v) for k, v in sorted(self.entries.items())},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LookupTable:
        if data.get("format_version") != FORMAT_VERSION:
            raise LutError(f"unsupported LUT format version {excerpt(data.get('format_version'))}")
        try:
            return cls(
                rules=data["rules"],
                source=LutSource(data["source"]),
                entries={k: LutEntry(key=k, **v) for k, v in data["entries"].items()},
                calibration=Calibration(**data["calibration"]),
                fallback={k: TypeFit(**v) for k, v in data["fallback"].items()},
                meta=dict(data.get("meta") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise LutError(f"not a latlab LUT: {exc}") from exc

    def to_yaml(self) -> str:
        """OFA/ProxylessNAS latency-table style: ``key: {count, mean, std}`` per entry (ms;
        ``std`` is IQR / 1.349, the normal-equivalent spread), after a commented header."""
        lines = [
            f"# latlab LUT ({self.source.value}, rules {self.rules}); latency in ms",
            f"# calibration: latency = {self.calibration.scale:.4f} x sum(mean)"
            f" - {self.calibration.per_kernel_us:.4f} us"
            f" x kernels + {self.calibration.constant_ms:.6f} ms",
        ]
        lines += [f"# {k}: {json.dumps(v)}" for k, v in sorted(self.meta.items())]
        for key, entry in sorted(self.entries.items()):
            lines.append(f"{json.dumps(key)}:")
            lines.append(f"  count: {entry.n}")
            lines.append(f"  mean: {entry.median_us / 1e3!r}")
            lines.append(f"  std: {entry.iqr_us / 1.349 / 1e3!r}")
        return "\n".join(lines) + "\n"


def _entry_json(entry: LutEntry) -> dict[str, Any]:
    data = asdict(entry)
    del data["key"]
    return data
