"""Hypothesis strategies shared by the property tests."""

from __future__ import annotations

from hypothesis import strategies as st

from latlab.datasets.dump import STAT_FIELDS, ArchRow, DatasetDump, DeviceRow, MeasurementRow
from latlab.spaces.nb201 import Nb201

latency_samples_ms = st.lists(
    st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False),
    min_size=1,
    max_size=500,
)

# --------------------------------------------------------------------------- datasets

_names = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=30,
).filter(lambda s: s == s.strip() and bool(s))


@st.composite
def csv_datasets(draw: st.DrawFn) -> DatasetDump:
    """A dataset dump of NB201 archs on devices with arbitrary (CSV-hostile) names."""
    space = Nb201()
    devices = [
        DeviceRow(f"{i:032x}", name, {})
        for i, name in enumerate(draw(st.lists(_names, min_size=1, max_size=3, unique=True)))
    ]
    indices = draw(st.lists(st.integers(0, space.size - 1), min_size=1, max_size=20, unique=True))
    archs = [
        ArchRow(i, space.from_index(x).string, str(x), None, None) for i, x in enumerate(indices)
    ]
    latency = st.floats(min_value=1e-6, max_value=1e6, allow_nan=False, allow_infinity=False)
    measurements = [
        MeasurementRow(
            measurement_id=i,
            arch=arch.arch,
            device_id=draw(st.sampled_from(devices)).id,
            source="measured",
            latency_ms=draw(latency),
            latency_s=None,
            n=1,
            stats=dict.fromkeys(STAT_FIELDS),
            samples_ms=None,
            runtime=draw(_names),
            runtime_version="1",
            provider="CPU",
            threads=1,
            protocol_version="1",
            agent_version="0",
            created_at="2026-01-01T00:00:00+00:00",
        )
        for i, arch in enumerate(archs)
    ]
    return DatasetDump(
        id="d",
        name="n",
        space=space.name,
        space_params={},
        source="campaign",
        config=None,
        provenance=None,
        archs=archs,
        devices=devices,
        measurements=measurements,
    )
