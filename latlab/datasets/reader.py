"""Reading published or exported latency files into plain rows, for import.

What each file holds is told by its name:

- ``<device>.pickle`` / ``.pkl``: LatBench (BRP-NAS/Eagle), ``{arch_vector: latency_s}``;
- ``<device>.json``: the same as JSON, ``{"3,3,4,1,3,1": latency_s}``;
- ``*.csv``: a header with at least ``space, arch, device, latency_ms`` (``runtime`` optional;
  other columns, such as those of latlab's own CSV export, are ignored);
- ``*.zip``: any of the above inside, or latlab's Parquet export (``measurements.parquet`` with
  ``devices.parquet``); READMEs and other text files in an archive are skipped.

Every problem is a ``DatasetFileError`` naming the file (and row) and saying what is wrong.
Nothing here knows the search spaces: archs stay in the text the file gave.
"""

from __future__ import annotations

import csv
import io
import math
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from latlab import untrusted
from latlab.datasets.dump import STAT_FIELDS
from latlab.datasets.latbench import (
    MS_PER_S,
    DatasetFileError,
    read_latbench_json,
    read_latbench_pickle,
)
from latlab.untrusted import excerpt

__all__ = ["CSV_REQUIRED", "ImportRow", "ImportTable", "read_import"]

CSV_REQUIRED = ("space", "arch", "device", "latency_ms")
SKIPPED_SUFFIXES = frozenset({".md", ".txt", ""})
MAX_ZIP_MEMBERS = 10_000
#: Refuse archives that would unpack to more than this (a zip bomb).
MAX_UNZIPPED_BYTES = 1 << 30
#: What latlab's exports put beside the data: the dataset's name, space and parameters.
METADATA = "dataset.json"


@dataclass(frozen=True)
class ImportRow:
    #: Any form the space parses (index, string, vector as ``a,b,c``).
    arch: str
    device: str
    latency_ms: float
    #: The file this row came from (inside an archive: ``archive.zip:member``).
    file: str
    #: The figure exactly as published when the file's unit is seconds (LatBench), so that an
    #: export of the import writes the same number back.
    latency_s: float | None = None
    runtime: str | None = None
    n: int = 0
    stats: Mapping[str, float | None] = field(default_factory=dict)


@dataclass
class ImportTable:
    """Rows of every file of one import, and the space the files name (CSV/Parquet)."""

    rows: list[ImportRow] = field(default_factory=list)
    #: Spaces named inside the files; LatBench files name none (they are NAS-Bench-201).
    spaces: set[str] = field(default_factory=set)
    #: Graph forms named inside the files (a latlab export's ``dataset.json``).
    forms: set[str] = field(default_factory=set)
    formats: set[str] = field(default_factory=set)
    files: list[str] = field(default_factory=list)


def read_import(files: Iterable[tuple[str, bytes]]) -> ImportTable:
    """Parse every ``(file name, bytes)``; an empty result is an error too."""
    table = ImportTable()
    for name, data in files:
        _read_one(table, name, data)
    if not table.rows:
        raise DatasetFileError("no latency rows in the given files")
    _check_text(table)
    return table


def _check_text(table: ImportTable) -> None:
    """No NUL character in any text a file gave (names inside a Parquet table or an archive's
    member names reach the database too; PostgreSQL refuses NUL and SQLite would store it)."""
    for texts, where in (
        (table.spaces, "a space name"),
        (table.forms, "a graph form"),
        (table.files, "a file name"),
    ):
        if any("\x00" in text for text in texts):
            raise DatasetFileError(f"{where} holds a NUL character")
    for row in table.rows:
        if any("\x00" in text for text in (row.arch, row.device, row.file, row.runtime or "")):
            raise DatasetFileError(f"{row.file}: a row's text holds a NUL character")


def _read_one(table: ImportTable, name: str, data: bytes, member: str | None = None) -> None:
    """``name`` labels the file in messages; ``member``, inside an archive, names the file."""
    path = PurePosixPath(member or name)
    suffix = path.suffix.lower()
    if suffix in (".pickle", ".pkl"):
        _add_latbench(table, name, path.stem, read_latbench_pickle(data, name), "latbench")
    elif suffix == ".json":
        _add_latbench(table, name, path.stem, read_latbench_json(data, name), "json")
    elif suffix == ".csv":
        _add_csv(table, name, data)
    elif suffix == ".zip" and member is None:
        _add_zip(table, name, data)
    else:
        raise DatasetFileError(
            f"{name}: unknown file type {suffix or '(none)'!r}; give .pickle, .json, .csv or .zip"
            " (an archive holds no archive)"
        )
    table.files.append(name)


def _add_latbench(
    table: ImportTable, name: str, device: str, latencies: dict[tuple[int, ...], float], fmt: str
) -> None:
    table.formats.add(fmt)
    table.rows.extend(
        ImportRow(
            arch=",".join(str(v) for v in vector),
            device=device,
            latency_ms=seconds * MS_PER_S,
            file=name,
            latency_s=seconds,
        )
        for vector, seconds in latencies.items()
    )


def _number(value: str, where: str, column: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise DatasetFileError(f"{where}: {column} {excerpt(value)} is not a number") from None
    if not math.isfinite(number) or number <= 0:
        raise DatasetFileError(f"{where}: {column} {excerpt(value)} is not a positive number")
    return number


def _add_csv(table: ImportTable, name: str, data: bytes) -> None:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetFileError(f"{name}: not UTF-8 text ({exc})") from exc
    if "\x00" in text:
        raise DatasetFileError(f"{name}: text may not contain NUL characters")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in reader.fieldnames or []]
    except csv.Error as exc:  # a field over the csv module's limit (128 KiB), ...
        raise DatasetFileError(f"{name}: not a readable CSV header ({exc})") from exc
    missing = [c for c in CSV_REQUIRED if c not in header]
    if missing:
        raise DatasetFileError(
            f"{name}: the header lacks {', '.join(missing)} (need {', '.join(CSV_REQUIRED)}"
            "[, runtime])"
        )
    reader.fieldnames = header
    table.formats.add("csv")
    before = len(table.rows)
    try:
        for line, record in enumerate(reader, start=2):
            where = f"{name} line {line}"
            if None in record or any(record.get(c) is None for c in CSV_REQUIRED):
                raise DatasetFileError(f"{where}: expected {len(header)} fields")
            space, arch, device = (record[c].strip() for c in ("space", "arch", "device"))
            if not (space and arch and device):
                raise DatasetFileError(f"{where}: space, arch and device must not be empty")
            table.spaces.add(space)
            table.rows.append(
                ImportRow(
                    arch=arch,
                    device=device,
                    latency_ms=_number(record["latency_ms"], where, "latency_ms"),
                    file=name,
                    runtime=(record.get("runtime") or "").strip() or None,
                )
            )
    except csv.Error as exc:
        raise DatasetFileError(f"{name}: not a readable CSV file ({exc})") from exc
    if len(table.rows) == before:
        raise DatasetFileError(f"{name}: no rows under the header")


def _add_zip(table: ImportTable, name: str, data: bytes) -> None:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = [i for i in archive.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError) as exc:
        raise DatasetFileError(f"{name}: not a readable zip archive ({exc})") from exc
    if len(members) > MAX_ZIP_MEMBERS:
        raise DatasetFileError(f"{name}: more than {MAX_ZIP_MEMBERS} files in the archive")
    if sum(i.file_size for i in members) > MAX_UNZIPPED_BYTES:
        raise DatasetFileError(f"{name}: unpacks to more than {MAX_UNZIPPED_BYTES} bytes")
    by_name = {PurePosixPath(i.filename).name: i for i in members}
    with archive:
        if METADATA in by_name:
            space, form = _metadata(name, _member(archive, name, by_name[METADATA]))
            table.spaces.add(space)
            if form is not None:
                table.forms.add(form)
        if "measurements.parquet" in by_name:
            _add_parquet(table, name, archive, by_name)
            return
        for info in members:
            member = PurePosixPath(info.filename)
            if member.suffix.lower() in SKIPPED_SUFFIXES or member.name == METADATA:
                continue
            label = f"{name}:{info.filename}"
            _read_one(table, label, _member(archive, name, info), member=info.filename)


def _member(archive: zipfile.ZipFile, name: str, info: zipfile.ZipInfo) -> bytes:
    try:
        return archive.read(info)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DatasetFileError(f"{name}: cannot read {excerpt(info.filename)} ({exc})") from exc


def _add_parquet(
    table: ImportTable, name: str, archive: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo]
) -> None:
    """latlab's own Parquet export: headline and statistics per arch x device."""
    if "devices.parquet" not in members:
        raise DatasetFileError(f"{name}: measurements.parquet without devices.parquet")
    measurements = _parquet_rows(archive, name, members["measurements.parquet"])
    devices = {d["id"]: d["name"] for d in _parquet_rows(archive, name, members["devices.parquet"])}
    table.formats.add("parquet")
    for i, m in enumerate(measurements):
        where = f"{name}:measurements.parquet row {i}"
        try:
            device = devices[m["device_id"]]
            latency_ms = _number(str(m["median_ms"]), where, "median_ms")
            row = ImportRow(
                arch=str(m["arch"]),
                device=str(device),
                latency_ms=latency_ms,
                file=f"{name}:measurements.parquet",
                runtime=m.get("runtime"),
                n=int(m.get("n") or 0),
                stats={k: m.get(k) for k in STAT_FIELDS},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetFileError(f"{where}: missing or malformed field ({exc})") from exc
        table.rows.append(row)


def _parquet_rows(archive: zipfile.ZipFile, name: str, info: zipfile.ZipInfo) -> list[Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        rows: list[Any] = pq.read_table(io.BytesIO(_member(archive, name, info))).to_pylist()
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DatasetFileError(
            f"{name}: {info.filename} is not a readable Parquet table ({exc})"
        ) from exc
    return rows


def _metadata(name: str, data: bytes) -> tuple[str, str | None]:
    """The space and the graph form (None: not said) that ``dataset.json`` names."""
    try:
        metadata = untrusted.loads(data, f"{name}: {METADATA}")
        space = metadata["space"]
        form = metadata.get("form")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DatasetFileError(f"{name}: {METADATA} names no space ({exc})") from exc
    if not isinstance(space, str) or not space:
        raise DatasetFileError(f"{name}: {METADATA} names no space")
    if form is not None and not isinstance(form, str):
        raise DatasetFileError(f"{name}: {METADATA} names a form that is not a string")
    return space, form
