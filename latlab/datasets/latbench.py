"""LatBench-style files, as BRP-NAS/Eagle ship them: one pickle per device,
``{arch_vector: latency_s}``; the same as JSON (``{"3,3,4,1,3,1": latency_s}``).

Reading a pickle runs no code: a restricted unpickler admits only the builtins and numpy
scalars these files are made of, so a hostile or corrupt file is a ``DatasetFileError``.
"""

from __future__ import annotations

import io
import json
import math
import pickle
from typing import Any

from latlab import untrusted
from latlab.datasets.dump import DatasetDump
from latlab.errors import LatlabError
from latlab.untrusted import excerpt

__all__ = [
    "MS_PER_S",
    "DatasetFileError",
    "read_latbench_json",
    "read_latbench_pickle",
    "write_latbench",
]

MS_PER_S = 1000.0


class DatasetFileError(LatlabError):
    """A dataset file that cannot be read: the message says where and why."""


def _by_device(dump: DatasetDump) -> dict[str, dict[tuple[int, ...], float]]:
    vectors = {a.arch: a.vector for a in dump.archs}
    stems = dump.device_files()
    out: dict[str, dict[tuple[int, ...], float]] = {stems[d.id]: {} for d in dump.devices}
    for m in dump.measurements:
        vector = vectors.get(m.arch)
        if vector is None:
            raise DatasetFileError(f"space {dump.space} has no arch vector: use csv or parquet")
        # an imported figure goes back out exactly as it was published
        seconds = m.latency_s if m.latency_s is not None else m.latency_ms / MS_PER_S
        out[stems[m.device_id]][vector] = seconds
    return out


def write_latbench(dump: DatasetDump, as_json: bool = False) -> dict[str, bytes]:
    """File name -> bytes: ``<device>.pickle`` (or ``.json``) per device, latency in seconds."""
    files: dict[str, bytes] = {}
    for stem, table in _by_device(dump).items():
        if as_json:
            text = {",".join(str(v) for v in k): s for k, s in table.items()}
            files[f"{stem}.json"] = json.dumps(text, indent=1).encode()
        else:
            files[f"{stem}.pickle"] = pickle.dumps(table, protocol=4)
    return files


class _SafeUnpickler(pickle.Unpickler):
    ALLOWED = {
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a LatBench pickle")


def _check(table: object, where: str) -> dict[tuple[int, ...], float]:
    if not isinstance(table, dict) or not table:
        raise DatasetFileError(f"{where}: expected a non-empty dict {{arch_vector: latency_s}}")
    out: dict[tuple[int, ...], float] = {}
    for key, value in table.items():
        if not isinstance(key, tuple) or not all(isinstance(v, int) for v in key):
            raise DatasetFileError(f"{where}: key {excerpt(key)} is not a tuple of op ids")
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            raise DatasetFileError(
                f"{where}: latency {excerpt(value)} of {excerpt(key)} is not a number"
            ) from None
        if not math.isfinite(seconds) or seconds <= 0:
            raise DatasetFileError(
                f"{where}: latency {excerpt(value)} of {excerpt(key)} is not a positive number"
            )
        out[tuple(int(v) for v in key)] = seconds
    return out


def read_latbench_pickle(data: bytes, where: str = "pickle") -> dict[tuple[int, ...], float]:
    try:
        table = _SafeUnpickler(io.BytesIO(data)).load()
    except Exception as exc:  # any unpickling failure: corrupt, truncated or hostile
        raise DatasetFileError(f"{where}: not a readable LatBench pickle ({exc})") from exc
    return _check(table, where)


def read_latbench_json(data: bytes, where: str = "json") -> dict[tuple[int, ...], float]:
    try:
        raw = untrusted.loads(data, where)
        table = {tuple(int(v) for v in key.split(",")): value for key, value in raw.items()}
    except (ValueError, AttributeError) as exc:
        raise DatasetFileError(f"{where}: not a LatBench JSON file ({exc})") from exc
    return _check(table, where)
