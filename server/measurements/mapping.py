"""Between the wire models of a measurement and its row, by field name.

Each field of ``latlab.schemas.Measured`` and its subclasses is stored in the column of the
same name; a nested model's fields in columns named with a prefix (``warmup.n`` in
``warmup_n``; ``stats.median_ms`` in ``median_ms``). A field added to the models and a column
of its name in the table (and a migration) is all a new measurement fact takes: nothing here
names a field that the rule covers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from latlab.schemas import (
    LatencyStats,
    MeasurementIn,
    MeasurementOut,
    MeasurementQuality,
    OpTiming,
    WarmupInfo,
)
from latlab.server.tables import Measurement, core_table

__all__ = ["COLUMNS", "measurement_out", "op_values", "row_values"]

COLUMNS = frozenset(core_table(Measurement).c.keys())

#: Nested models and the prefix of their columns.
FLATTENED: dict[str, tuple[type[BaseModel], str]] = {
    "warmup": (WarmupInfo, "warmup_"),
    "stats": (LatencyStats, ""),
    "quality": (MeasurementQuality, ""),
}
#: Upload fields that are not columns of the row: the lease (checked, not stored), the per-op
#: rows (a table of their own) and a runtime's reported statistics (turned into ``stats``).
NOT_STORED = frozenset({"lease_token", "ops", "reported"})


def _stored_columns() -> frozenset[str]:
    """The columns an upload fills; a field added to the models without its column fails
    here, when the server starts, not on the first upload."""
    names: set[str] = set()
    for name in [*MeasurementIn.model_fields, "stats", "quality"]:
        if name in FLATTENED:
            model, prefix = FLATTENED[name]
            names.update(f"{prefix}{key}" for key in model.model_fields)
        elif name not in NOT_STORED:
            names.add(name)
    if names - COLUMNS:
        raise TypeError(f"measurement fields without a column: {sorted(names - COLUMNS)}")
    return frozenset(names)


_stored_columns()


def row_values(
    body: MeasurementIn, stats: LatencyStats, quality: MeasurementQuality
) -> dict[str, Any]:
    """The columns of an uploaded measurement's row (the job's ids and config come apart)."""
    data = body.model_dump(mode="json", exclude=set(NOT_STORED))
    data["stats"] = stats.model_dump()
    data["quality"] = quality.model_dump()
    values: dict[str, Any] = {}
    for name, value in data.items():
        if name in FLATTENED:
            prefix = FLATTENED[name][1]
            values.update({f"{prefix}{key}": item for key, item in value.items()})
        else:
            values[name] = value
    return values


def op_values(measurement_id: int, ops: Sequence[BaseModel]) -> list[dict[str, Any]]:
    return [
        {"measurement_id": measurement_id, "seq": seq, **op.model_dump(mode="json")}
        for seq, op in enumerate(ops)
    ]


def measurement_out(
    row: Mapping[Any, Any],
    ops: Sequence[Mapping[Any, Any]] | None = None,
    *,
    samples: bool = True,
) -> MeasurementOut:
    """The answer for a row (``ops``: its per-op rows, or None to leave them out)."""
    data: dict[str, Any] = {}
    for name in MeasurementOut.model_fields:
        if name in FLATTENED:
            model, prefix = FLATTENED[name]
            data[name] = {key: row[f"{prefix}{key}"] for key in model.model_fields}
        elif name in COLUMNS:
            data[name] = row[name]
    data["config"] = row["config"] or None  # an imported number has none
    data["samples_ms"] = list(row["samples_ms"]) if samples else None
    data["ops"] = (
        None if ops is None else [{key: op[key] for key in OpTiming.model_fields} for op in ops]
    )
    return MeasurementOut.model_validate(data)
