"""Parse what TFLite's ``benchmark_model`` prints: end-to-end timings and the operator-wise
profile (``--enable_op_profiling``), in the three layouts phones and LiteRT builds produce.

- TensorFlow Lite with XNNPACK: ``INFO:``-prefixed log lines; two ``count=...`` lines (the
  first is the warm-up, the second the regular runs); ``Inference timings in us: Init: ...``;
  a profile for the initialisation (skipped) and one "for Regular Benchmark Runs"; tab-separated
  rows whose node types may hold spaces and commas (``Convolution (NHWC, QC8) IGEMM``).
- LiteRT: the same tables, space-aligned; its ``[first]`` column is the op's *start* time in
  the run, not the first run's duration.
- The older README layout: a ``[start]`` column before ``[first]``, no ``count=`` lines, and
  ``Average inference timings in us: Warmup: ..., Init: ..., Inference: ...``.

Anything cut short (a table with no section after it, a row that does not parse, a
``count=`` line without its statistics) is a ``BenchmarkOutputError``, never a wrong number.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from latlab.agent.errors import RunnerError

__all__ = [
    "BenchmarkOutput",
    "BenchmarkOutputError",
    "OpRow",
    "RunStats",
    "parse_benchmark_output",
]

FirstColumn = Literal["auto", "duration", "start"]


class BenchmarkOutputError(RunnerError):
    """benchmark_model's output is truncated or not in a layout this parser knows."""


@dataclass(frozen=True)
class RunStats:
    """A ``count=N first=.. curr=.. min=.. max=.. avg=.. std=..`` line, in microseconds."""

    count: int
    avg_us: float | None = None
    first_us: float | None = None
    curr_us: float | None = None
    min_us: float | None = None
    max_us: float | None = None
    std_us: float | None = None


@dataclass(frozen=True)
class OpRow:
    """One row of the operator-wise profile's "Run Order" table."""

    node_type: str
    #: As printed: ``[tfl.quantize]:0``, ``Delegate/Convolution (NHWC, QC8) IGEMM:0``, ...
    name: str
    #: The node's index in the executed graph where the name ends in ``:N``.
    node_index: int | None
    avg_ms: float
    #: The op's start time in the run (the README layout's ``[start]``, LiteRT's ``[first]``).
    start_ms: float | None
    #: The first run's time for this op, where the output has it.
    first_ms: float | None
    percent: float
    mem_kb: float
    times_called: int


@dataclass(frozen=True)
class BenchmarkOutput:
    #: The first ``count=`` line (warm-up runs) and the second (the regular runs).
    warmup: RunStats | None
    runs: RunStats | None
    #: ``Inference timings in us`` (or the README layout's ``Average inference timings``).
    init_us: float | None
    first_inference_us: float | None
    warmup_avg_us: float | None
    inference_avg_us: float | None
    #: The regular runs' operator-wise profile (empty without ``--enable_op_profiling``).
    ops: tuple[OpRow, ...]
    #: ``Timings (microseconds): count=...`` under that profile: the profiled runs.
    profiled_runs: RunStats | None
    nodes_executed: int | None


_PREFIX = re.compile(r"^(?:INFO|WARNING|ERROR|VERBOSE):\s?")
_COUNT = re.compile(r"^count=(\d+)\b(.*)$")
_STAT = re.compile(r"(\w+)=(-?[\d.]+(?:e[+-]?\d+)?)")
_INFERENCE = re.compile(r"^(?:Average )?[Ii]nference timings in us:\s*(.*)$")
_PROFILED = re.compile(r"^Timings \(microseconds\):\s*(count=.*)$")
_SECTION = re.compile(r"^=+\s*(.+?)\s*=+$")
_HEADER = re.compile(r"\[([^\]]+)\]")
_NUMBER = r"-?\d+(?:\.\d+)?(?:e[+-]?\d+)?%?"
_INDEX = re.compile(r":(\d+)$")
_REGULAR = "Operator-wise Profiling Info for Regular Benchmark Runs"
_INIT = "Profiling Info for Benchmark Initialization"


def parse_benchmark_output(text: str, first_column: FirstColumn = "auto") -> BenchmarkOutput:
    """``first_column``: what ``[first]`` holds where there is no ``[start]`` column —
    ``duration`` (TensorFlow Lite), ``start`` (LiteRT), or ``auto``: start times when every
    row starts at least half its average after the one before (two rows or more)."""
    lines = [_PREFIX.sub("", line.rstrip("\r")) for line in text.splitlines()]
    counts: list[RunStats] = []
    timings: dict[str, float] = {}
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if (match := _COUNT.match(stripped)) is not None:
            counts.append(_run_stats(stripped, number))
        elif (match := _INFERENCE.match(stripped)) is not None:
            timings = _inference_timings(match.group(1), number)
    table_at = _regular_run_order(lines)
    ops: tuple[OpRow, ...] = ()
    profiled: RunStats | None = None
    nodes: int | None = None
    if table_at is not None:
        ops, after = _table(lines, table_at, first_column)
        profiled, nodes = _profile_footer(lines, after)
    if not counts and not timings and not ops:
        raise BenchmarkOutputError(
            "no timings in benchmark_model's output (no count= line, no inference timings, "
            "no op profile): did it run?"
        )
    return BenchmarkOutput(
        warmup=counts[0] if len(counts) >= 2 else None,
        runs=counts[-1] if counts else None,
        init_us=timings.get("init"),
        first_inference_us=timings.get("first inference"),
        warmup_avg_us=timings.get("warmup (avg)", timings.get("warmup")),
        inference_avg_us=timings.get("inference (avg)", timings.get("inference")),
        ops=ops,
        profiled_runs=profiled,
        nodes_executed=nodes,
    )


def _run_stats(text: str, line: int) -> RunStats:
    stats = {k: float(v) for k, v in _STAT.findall(text)}
    # the full form is first, curr, min, max, avg, std in that order; LiteRT's profile footer
    # prints count and curr alone. A key without its value, or a full form without its avg
    # and std, is a line cut short.
    cut = re.search(r"\w+=(?!-?[\d.])", text) is not None
    if cut or "count" not in stats or ("first" in stats and not {"avg", "std"} <= stats.keys()):
        raise BenchmarkOutputError(f"line {line}: timing line cut short: {text!r}")
    return RunStats(
        count=int(stats["count"]),
        avg_us=stats.get("avg"),
        first_us=stats.get("first"),
        curr_us=stats.get("curr"),
        min_us=stats.get("min"),
        max_us=stats.get("max"),
        std_us=stats.get("std"),
    )


def _inference_timings(text: str, line: int) -> dict[str, float]:
    values: dict[str, float] = {}
    for part in text.split(","):
        key, sep, value = part.partition(":")
        try:
            values[key.strip().lower()] = float(value)
        except ValueError:
            raise BenchmarkOutputError(
                f"line {line}: unreadable inference timings {text!r}"
            ) from None
        if not sep:
            raise BenchmarkOutputError(f"line {line}: unreadable inference timings {text!r}")
    return values


def _regular_run_order(lines: Sequence[str]) -> int | None:
    """Index of the header row of the regular runs' Run Order table (not the init profile's)."""
    in_init = False
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith(_INIT):
            in_init = True
        elif stripped.startswith(_REGULAR):
            in_init = False
        section = _SECTION.match(stripped)
        if section is not None and section.group(1) == "Run Order" and not in_init:
            if i + 1 >= len(lines) or "[node type]" not in lines[i + 1].lower():
                raise BenchmarkOutputError(f"line {i + 2}: Run Order table without its header")
            return i + 1
    return None


def _table(
    lines: Sequence[str], header_at: int, first_column: FirstColumn
) -> tuple[tuple[OpRow, ...], int]:
    columns = [c.strip().lower() for c in _HEADER.findall(lines[header_at])]
    if columns[:1] != ["node type"] or columns[-1:] != ["name"] or "avg ms" not in columns:
        raise BenchmarkOutputError(f"line {header_at + 1}: unknown op table header {columns}")
    numeric = columns[1:-1]
    pattern = re.compile(
        r"^\s*(?P<type>\S.*?)\s+"
        + r"\s+".join(f"({_NUMBER})" for _ in numeric)
        + r"\s+(?P<name>\S.*)$"
    )
    raw: list[tuple[str, str, dict[str, float]]] = []
    i = header_at + 1
    while i < len(lines) and lines[i].strip() and not _SECTION.match(lines[i].strip()):
        fields = _fields(lines[i], len(numeric), pattern)
        if fields is None:
            raise BenchmarkOutputError(f"line {i + 1}: op row does not parse: {lines[i].strip()!r}")
        node_type, values, name = fields
        raw.append((node_type, name, dict(zip(numeric, values, strict=True))))
        i += 1
    if not any(_SECTION.match(line.strip()) for line in lines[i:]):
        raise BenchmarkOutputError(
            f"the op table ends at line {i} with nothing after it: output truncated"
        )
    if not raw:
        raise BenchmarkOutputError(f"line {header_at + 1}: an op table without rows")
    starts = _first_is_start(raw, first_column)
    rows = tuple(
        OpRow(
            node_type=node_type,
            name=name,
            node_index=int(m.group(1)) if (m := _INDEX.search(name)) else None,
            avg_ms=v["avg ms"],
            start_ms=v.get("start", v.get("first") if starts else None),
            first_ms=None if starts else v.get("first"),
            percent=v.get("%", 0.0),
            mem_kb=v.get("mem kb", 0.0),
            times_called=int(v.get("times called", 0)),
        )
        for node_type, name, v in raw
    )
    return rows, i


def _fields(
    line: str, n_numeric: int, pattern: re.Pattern[str]
) -> tuple[str, list[float], str] | None:
    """Tab-separated rows split on tabs (node types and names may hold spaces); space-aligned
    ones by the run of numbers between the node type and the name."""
    if "\t" in line:
        parts = [p.strip() for p in line.strip("\n").split("\t")]
        parts = parts[1:] if parts and not parts[0] else parts
        if len(parts) != n_numeric + 2:
            return None
        try:
            values = [float(p.rstrip("%")) for p in parts[1:-1]]
        except ValueError:
            return None
        return parts[0], values, parts[-1]
    match = pattern.match(line)
    if match is None:
        return None
    values = [float(match.group(k + 2).rstrip("%")) for k in range(n_numeric)]
    return match.group("type"), values, match.group("name").strip()


def _first_is_start(
    raw: list[tuple[str, str, dict[str, float]]], first_column: FirstColumn
) -> bool:
    if "start" in raw[0][2] or "first" not in raw[0][2]:
        return False
    if first_column != "auto":
        return first_column == "start"
    if len(raw) < 2:
        return False
    firsts = [v["first"] for _, _, v in raw]
    avgs = [v["avg ms"] for _, _, v in raw]
    return all(b - a >= 0.5 * avg for a, b, avg in zip(firsts, firsts[1:], avgs, strict=False))


def _profile_footer(lines: Sequence[str], start: int) -> tuple[RunStats | None, int | None]:
    """The profiled runs' ``Timings (microseconds)`` and ``Number of nodes executed`` that
    follow the table (before the next profile starts)."""
    profiled: RunStats | None = None
    nodes: int | None = None
    for number, line in enumerate(lines[start:], start=start + 1):
        stripped = line.strip()
        if stripped.startswith((_REGULAR, _INIT)):
            break
        if stripped.startswith("Number of nodes executed:"):
            nodes = int(stripped.rsplit(":", 1)[1])
        elif (match := _PROFILED.match(stripped)) is not None:
            profiled = _run_stats(match.group(1), number)
            break
    return profiled, nodes
