"""Importing published or exported datasets: rows marked ``imported``, no raw samples.

An import is one transaction: the dataset, its archs, a device per named device (an
``imported`` device, reused by name across imports), one measurement and one entry per
arch x device. Any bad row refuses the whole import; nothing is stored half-way.

Runtime: a row's own (a CSV ``runtime`` column, a latlab export), else the import's
``runtime`` (what the uploader says the published numbers came from), else ``unknown``:
latlab never guesses one. A predictor trained on such rows is registered under that runtime.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter, defaultdict
from typing import Any

from sqlalchemy.orm import Session

from latlab.datasets.dump import STAT_FIELDS
from latlab.datasets.reader import ImportRow, ImportTable
from latlab.errors import LatlabError
from latlab.schemas import (
    UNKNOWN_RUNTIME,
    DatasetOut,
    DatasetSource,
    DatasetState,
    DeviceDescriptor,
    DeviceSource,
    MeasurementSource,
)
from latlab.server.auth import hash_token, new_device_token
from latlab.server.datasets import repository
from latlab.server.datasets.service import dataset_out
from latlab.server.db import utcnow
from latlab.server.devices import repository as device_repository
from latlab.server.errors import InvalidInput
from latlab.server.tables import Dataset, Device
from latlab.spaces import GraphForm, get_space
from latlab.untrusted import excerpt

__all__ = ["import_dataset"]

log = logging.getLogger(__name__)

#: LatBench files name no space: they are NAS-Bench-201.
LATBENCH_SPACE = "nb201"
IMPORTED_PROTOCOL = "imported"
#: Measurement.runtime's column width.
MAX_RUNTIME_CHARS = 100


def import_dataset(
    session: Session,
    table: ImportTable,
    *,
    name: str,
    space_name: str | None = None,
    space_params: dict[str, int] | None = None,
    note: str | None = None,
    form: GraphForm | None = None,
    runtime: str | None = None,
) -> DatasetOut:
    """``form``: the graph form the figures are of, if the importer knows it (a latlab export
    says it in its ``dataset.json``); None leaves it unknown. ``runtime``: the runtime of rows
    whose file names none (else they are ``unknown``)."""
    params = space_params or {}
    space = get_space(_space_name(table, space_name), **params)
    measured_form = _form(table, form)
    canonical = _canonical_archs(space, table.rows)
    _refuse_duplicates(table.rows, canonical)
    runtimes = _runtimes(table.rows, runtime)
    devices = {d: _imported_device(session, d) for d in dict.fromkeys(r.device for r in table.rows)}
    now = utcnow()
    dataset = Dataset(
        id=uuid.uuid4().hex,
        name=name,
        space=space.name,
        space_params=params,
        source=DatasetSource.imported.value,
        state=DatasetState.ready.value,
        form=measured_form.value if measured_form is not None else None,
        config=None,
        provenance={
            "files": table.files,
            "formats": sorted(table.formats),
            "rows": len(table.rows),
            "note": note,
            "runtime": runtime,
            "import_devices": _device_summary(table.rows, devices, runtimes),
        },
        created_at=now,
    )
    repository.add(session, dataset)
    archs = dict.fromkeys(canonical[r.arch] for r in table.rows)  # first-seen order
    repository.add_archs(session, dataset.id, [(arch, str(index)) for arch, index in archs])
    arch_ids = repository.arch_ids(session, dataset.id)
    repository.insert_imported(
        session,
        [
            _measurement(r, devices[r.device][0].id, rt, now)
            for r, rt in zip(table.rows, runtimes, strict=True)
        ],
        [(arch_ids[canonical[r.arch][0]], devices[r.device][0].id) for r in table.rows],
    )
    log.info(
        "dataset imported",
        extra={"dataset_id": dataset.id, "rows": len(table.rows), "devices": len(devices)},
    )
    return dataset_out(session, dataset)


def _space_name(table: ImportTable, requested: str | None) -> str:
    named = set(table.spaces)
    if requested is not None:
        named.add(requested)
    if len(named) > 1:
        raise InvalidInput(
            f"the files name several spaces ({', '.join(sorted(named))}): one import is one space"
        )
    if named:
        return named.pop()
    if table.formats <= {"latbench", "json"}:
        return LATBENCH_SPACE
    raise InvalidInput("no search space given: pass space")


def _form(table: ImportTable, requested: GraphForm | None) -> GraphForm | None:
    named = set(table.forms) | ({requested.value} if requested is not None else set())
    if len(named) > 1:
        raise InvalidInput(
            f"the import names several graph forms ({', '.join(sorted(named))}): "
            "one import is one form"
        )
    if not named:
        return None
    form = named.pop()
    try:
        return GraphForm(form)
    except ValueError:
        raise InvalidInput(
            f"unknown graph form {excerpt(form)}; known: {', '.join(GraphForm)}"
        ) from None


def _canonical_archs(space: Any, rows: list[ImportRow]) -> dict[str, tuple[str, int]]:
    """Each arch text of the files -> (canonical string, index); a bad one refuses the import."""
    out: dict[str, tuple[str, int]] = {}
    for row in rows:
        if row.arch in out:
            continue
        try:
            arch = space.parse(row.arch)
        except LatlabError as exc:
            raise InvalidInput(f"{row.file}: {exc}") from exc
        out[row.arch] = (space.encode(arch), arch.index)
    return out


def _refuse_duplicates(rows: list[ImportRow], canonical: dict[str, tuple[str, int]]) -> None:
    seen: set[tuple[str, str]] = set()
    for row in rows:
        key = (canonical[row.arch][0], row.device)
        if key in seen:
            raise InvalidInput(
                f"{row.file}: arch {excerpt(row.arch)} on device {excerpt(row.device)} is given twice"
            )
        seen.add(key)


def _runtimes(rows: list[ImportRow], default: str | None) -> list[str]:
    """Each row's runtime: its own, else the import's, else ``unknown``."""
    out = [row.runtime or default or UNKNOWN_RUNTIME for row in rows]
    for row, runtime in zip(rows, out, strict=True):
        if len(runtime) > MAX_RUNTIME_CHARS:
            raise InvalidInput(
                f"{row.file}: runtime {excerpt(runtime)} is longer than {MAX_RUNTIME_CHARS} "
                "characters"
            )
    return out


def _device_summary(
    rows: list[ImportRow], devices: dict[str, tuple[Device, bool]], runtimes: list[str]
) -> list[dict[str, Any]]:
    """Per device of the import, in first-seen order: id, name, whether this import created
    it, its rows and their runtimes."""
    counts = Counter(r.device for r in rows)
    seen: defaultdict[str, set[str]] = defaultdict(set)
    for row, runtime in zip(rows, runtimes, strict=True):
        seen[row.device].add(runtime)
    return [
        {
            "id": device.id,
            "name": name,
            "created": created,
            "rows": counts[name],
            "runtimes": sorted(seen[name]),
        }
        for name, (device, created) in devices.items()
    ]


def _imported_device(session: Session, name: str) -> tuple[Device, bool]:
    """The imported device of this name, created on first use (then True). Its token hash is
    of a token nobody holds: it can never call the agent API."""
    if len(name) > 200:
        raise InvalidInput(f"device name {excerpt(name)} is longer than 200 characters")
    existing = device_repository.imported_named(session, name)
    if existing is not None:
        return existing, False
    now = utcnow()
    device = Device(
        id=uuid.uuid4().hex,
        name=name,
        token_hash=hash_token(new_device_token()),
        descriptor=DeviceDescriptor().model_dump(mode="json"),
        source=DeviceSource.imported.value,
        created_at=now,
        last_seen_at=now,
    )
    device_repository.add(session, device)
    return device, True


def _measurement(row: ImportRow, device_id: str, runtime: str, now: Any) -> dict[str, Any]:
    provenance: dict[str, Any] = {"file": row.file}
    if row.latency_s is not None:
        provenance["latency_s"] = row.latency_s
    stats = {k: row.stats.get(k) for k in STAT_FIELDS}
    return {
        "job_id": None,
        "model_id": None,
        "source": MeasurementSource.imported.value,
        "provenance": provenance,
        "device_id": device_id,
        "runtime": runtime,
        "runtime_version": "",
        "provider": "",
        "threads": 0,
        "protocol_version": IMPORTED_PROTOCOL,
        "agent_version": "",
        "input_shapes": {},
        "config": {},
        "warmup_n": 0,
        "warmup_total_ms": 0.0,
        "n": row.n,
        "median_ms": row.latency_ms,
        **stats,
        "samples_ms": [],
        "timing_wall_s": 0.0,
        "op_profile": None,
        "created_at": now,
    }
