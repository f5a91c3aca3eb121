"""The device canary: a reference model timed between a device's jobs, its series through the
API, the exports that carry it, and a campaign that measures a drifted window again.

Real runs: a live server and the local agent timing exported NB201 archs with onnxruntime. The
device's slowing down is made by editing one canary's stored median (the one real thing a test
cannot order on demand); everything after that is the server's own check and a real re-measure.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import threading
import time
import zipfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.orm import sessionmaker

from latlab.client import Client
from latlab.errors import ApiError
from latlab.quality import canary_windows
from latlab.runtimes.onnxruntime import OnnxRuntimeConfig
from latlab.schemas import (
    CanaryPoint,
    DatasetCreate,
    DatasetFormat,
    DatasetOut,
    DatasetState,
    JobPurpose,
    JobState,
    ModelFormat,
)
from latlab.server.blobstore import open_blob_store
from latlab.server.canary.service import CanaryModels
from latlab.server.config import Settings
from latlab.server.db import create_db_engine, session_scope
from latlab.server.embedded import EmbeddedServer
from latlab.server.tables import Model
from tests.factories import API_KEY, make_settings
from tests.test_cli import latlab
from tests.test_e2e import RunningAgent, start_agent

FAST = OnnxRuntimeConfig(
    protocol="fixed", warmup_runs=2, warmup_s=0, timed_runs=10, timed_s=0, profile_runs=2
)
EVERY = 2
# the slowed canary drifts by +200 %; this busy 2-core host drifts by up to ~45 % on its own
LIMIT_PCT = 100.0
ARCHS = [1, 2, 3, 4, 5, 6]


# --------------------------------------------------------------------------- the windows


def _t(seconds: float) -> float:
    return seconds


def test_a_window_drifts_with_the_canary_before_or_after_it_furthest_from_the_median() -> None:
    canaries = [(_t(0), 10.0), (_t(10), 10.0), (_t(20), 10.0), (_t(30), 20.0)]
    windows = canary_windows(canaries, [_t(5), _t(15), _t(25)])
    assert windows.drift_pct == [0.0, 0.0, 100.0]
    assert windows.reference_ms == 10.0 and windows.n == 4
    assert windows.spread_pct == 100.0
    # the speed then: the canary interpolated in time between its two neighbours
    assert windows.scale == [1.0, 1.0, 1.5]


def test_a_measurement_divided_by_its_scale_is_at_the_reference_speed() -> None:
    # the device slows down linearly by 20 % over a minute; a model that takes 5 ms at the
    # reference speed slows down with it
    canaries = [(_t(0), 10.0), (_t(30), 11.0), (_t(60), 12.0)]
    at = [_t(10), _t(45)]
    windows = canary_windows(canaries, at)
    assert windows.reference_ms == 11.0
    speed = [(10.0 + 2.0 * t / 60) / 11.0 for t in at]
    assert windows.scale == pytest.approx(speed)
    measured = [5.0 * s for s in speed]
    adjusted = [m / s for m, s in zip(measured, windows.scale, strict=True) if s]
    assert adjusted == pytest.approx([5.0, 5.0])


def test_a_canary_at_the_same_instant_counts_as_before_and_one_side_is_enough() -> None:
    canaries = [(_t(0), 13.0), (_t(10), 10.0), (_t(20), 10.0), (_t(30), 12.0)]
    # at t=10 the canary of t=10 is the one before (the slow one at t=0 is not a neighbour);
    # after the last canary, the last one alone
    windows = canary_windows(canaries, [_t(10), _t(35)])
    assert windows.reference_ms == 10.0 and windows.n == 3
    assert windows.drift_pct == pytest.approx([0.0, 20.0])
    assert windows.scale == pytest.approx([1.0, 1.2])


def test_without_canaries_nothing_is_judged() -> None:
    windows = canary_windows([], [_t(1), _t(2)])
    assert windows.drift_pct == [None, None] == windows.scale and windows.reference_ms is None


def test_only_the_canaries_that_bound_the_measurements_make_the_reference() -> None:
    # a slow canary long before and another long after the campaign are not its reference
    canaries = [(_t(0), 50.0), (_t(100), 10.0), (_t(110), 10.0), (_t(120), 10.0), (_t(500), 50.0)]
    windows = canary_windows(canaries, [_t(105), _t(115)])
    assert windows.reference_ms == 10.0 and windows.n == 3
    assert windows.drift_pct == [0.0, 0.0]


medians = st.floats(min_value=0.1, max_value=1e4, allow_nan=False)


@given(
    values=st.lists(medians, min_size=1, max_size=20),
    at=st.lists(st.floats(min_value=-10, max_value=30), min_size=1, max_size=20),
    scale=st.floats(min_value=0.01, max_value=100),
)
def test_drift_is_relative_one_of_the_neighbours_and_ignores_the_unit(
    values: list[float], at: list[float], scale: float
) -> None:
    canaries = [(float(i), v) for i, v in enumerate(values)]
    windows = canary_windows(canaries, at)
    scaled = canary_windows([(t, v * scale) for t, v in canaries], at)
    assert scaled.scale == pytest.approx(windows.scale, rel=1e-9)
    assert all(
        s is not None
        and min(values) / windows.reference_ms - 1e-9
        <= s
        <= max(values) / windows.reference_ms + 1e-9
        for s in windows.scale
    )
    # (two neighbours equally far either side may swap under rounding: compare magnitudes)
    assert [abs(d or 0) for d in scaled.drift_pct] == pytest.approx(
        [abs(d or 0) for d in windows.drift_pct], rel=1e-9, abs=1e-9
    )
    assert windows.reference_ms is not None
    for t, drift in zip(at, windows.drift_pct, strict=True):
        i = sum(time <= t for time, _ in canaries)  # canaries[:i] are at or before t
        near = [100 * (v / windows.reference_ms - 1) for v in values[max(0, i - 1) : i + 1]]
        assert drift is not None and drift in near
        assert abs(drift) == pytest.approx(max(abs(d) for d in near))


# --------------------------------------------------------------------------- a live lab


def canary_settings(tmp_path: Path, db_url: str) -> Settings:
    return make_settings(
        tmp_path, db_url, canary_every_jobs=EVERY, canary_every_s=0, canary_close_wait_s=60
    )


@pytest.fixture
def lab(tmp_path: Path, db_url: str) -> Iterator[tuple[EmbeddedServer, RunningAgent, Client]]:
    """A server whose devices time the canary every 2 jobs, an agent, a client."""
    with EmbeddedServer(canary_settings(tmp_path, db_url)) as server:
        agent = start_agent(server.url, tmp_path)
        try:
            with Client(server.url, API_KEY) as client:
                yield server, agent, client
        finally:
            agent.close()


def campaign(client: Client, **overrides: object) -> DatasetOut:
    device = client.devices()[0]
    values: dict[str, object] = {
        "name": "canaried",
        "space": "nb201",
        "archs": ARCHS,
        "device_ids": [device.id],
        "config": FAST,
    }
    values.update(overrides)
    dataset = client.create_dataset(DatasetCreate.model_validate(values))
    done = client.wait_dataset(dataset.id, timeout_s=300)
    assert done.state == DatasetState.done and done.progress.done == len(ARCHS), done
    return done


def campaign_times(client: Client, dataset_id: str) -> list[datetime]:
    rows = csv.DictReader(
        io.StringIO(client.export_dataset(dataset_id, DatasetFormat.csv).decode())
    )
    ids = {r["arch_index"] for r in rows}
    assert len(ids) == len(ARCHS)
    device = client.devices()[0]
    canary_models = {p.model_id for p in client.device_canary(device.id)}
    return sorted(
        m.created_at
        for m in client.measurements(device_id=device.id, limit=1000)
        if m.model_id not in canary_models
    )


def test_the_agent_times_the_canary_every_n_jobs_and_after_the_campaign(
    lab: tuple[EmbeddedServer, RunningAgent, Client],
) -> None:
    _, _, client = lab
    dataset = campaign(client, remeasure_drifted=0)  # a busy host may drift: no extra canaries
    device = client.devices()[0]
    points = client.device_canary(device.id)
    measured = campaign_times(client, dataset.id)

    # an opening canary, one after every 2 jobs, one that closes the last window
    assert len(points) == 1 + len(ARCHS) // EVERY
    assert all(isinstance(p, CanaryPoint) for p in points)
    assert {p.runtime_identity for p in points} == {FAST.identity_key()}
    assert len({p.model_id for p in points}) == 1
    assert all(p.median_ms > 0 and p.verdict for p in points)
    times = [p.measured_at for p in points]
    assert times == sorted(times)
    assert times[0] < measured[0] and times[-1] > measured[-1]
    for before, after in itertools.pairwise(times):
        assert sum(before < t < after for t in measured) <= EVERY

    jobs = [j for j in client.jobs(limit=1000) if j.purpose == JobPurpose.canary]
    assert len(jobs) == len(points) and all(j.state == JobState.done for j in jobs)
    assert all(j.device_id == device.id and not j.config.profile_ops for j in jobs)
    measurements = client.measurements(device_id=device.id, limit=1000)
    assert {m.purpose for m in measurements} == {JobPurpose.measure, JobPurpose.canary}


def test_the_cli_shows_a_devices_canary_series(
    lab: tuple[EmbeddedServer, RunningAgent, Client],
) -> None:
    server, _, client = lab
    campaign(client, remeasure_drifted=0)
    device = client.devices()[0]
    points = client.device_canary(device.id)
    shown = latlab("devices", "canary", device.name, url=server.url)
    assert shown.returncode == 0, shown.stderr
    assert f"{len(points)} canaries" in shown.stdout
    assert all(f"{p.median_ms:.3f}" in shown.stdout for p in points)
    as_json = latlab("devices", "canary", device.id, "--json", "--limit", "2", url=server.url)
    assert [p["measurement_id"] for p in json.loads(as_json.stdout)] == [
        p.measurement_id for p in points[-2:]
    ]


def test_the_exports_carry_the_canary_per_row_and_as_a_series(
    lab: tuple[EmbeddedServer, RunningAgent, Client],
) -> None:
    _, _, client = lab
    dataset = campaign(client, remeasure_drifted=0)
    points = client.device_canary(client.devices()[0].id)

    rows = list(
        csv.DictReader(io.StringIO(client.export_dataset(dataset.id, DatasetFormat.csv).decode()))
    )
    assert {r["canary"] for r in rows} <= {"ok", "drifted"} and len(rows) == len(ARCHS)
    for r in rows:
        drift, scale = float(r["canary_drift_pct"]), float(r["canary_scale"])
        assert abs(drift) < 100 and 0.5 < scale < 2
        assert float(r["adjusted_ms"]) == pytest.approx(float(r["latency_ms"]) / scale)

    archive = zipfile.ZipFile(io.BytesIO(client.export_dataset(dataset.id, DatasetFormat.parquet)))
    series = pq.read_table(io.BytesIO(archive.read("canaries.parquet"))).to_pylist()
    assert [s["median_ms"] for s in series] == [p.median_ms for p in points]
    table = pq.read_table(io.BytesIO(archive.read("measurements.parquet"))).to_pylist()
    assert sorted(r["canary_drift_pct"] for r in table) == sorted(
        float(r["canary_drift_pct"]) for r in rows
    )
    readme = archive.read("README.md").decode()
    assert f"{len(points)} canaries" in readme and "Device canary" in readme

    metadata = json.loads(archive.read("dataset.json"))
    assert metadata["provenance"]["canary"] == {"limit_pct": 5.0, "remeasure_drifted": 0}


def slow_down_a_canary(
    server: EmbeddedServer, dataset_id: str, factor: float, *, from_last: int
) -> None:
    """As if the device had slowed down for one canary (0: the last one, 1: the one before);
    the campaign is checked again."""
    engine = sa.create_engine(server.settings.resolved_database_url)
    try:
        with engine.begin() as conn:
            canary = conn.execute(
                sa.text(
                    "SELECT id FROM measurements WHERE purpose = 'canary' "
                    "ORDER BY created_at DESC LIMIT 1 OFFSET :k"
                ),
                {"k": from_last},
            ).scalar_one()
            conn.execute(
                sa.text("UPDATE measurements SET median_ms = median_ms * :f WHERE id = :id"),
                {"f": factor, "id": canary},
            )
            conn.execute(
                sa.text("UPDATE datasets SET state = 'measuring' WHERE id = :id"),
                {"id": dataset_id},
            )
    finally:
        engine.dispose()


def export_rows(client: Client, dataset_id: str) -> list[dict[str, str]]:
    text = client.export_dataset(dataset_id, DatasetFormat.csv).decode()
    return sorted(csv.DictReader(io.StringIO(text)), key=lambda r: float(r["canary_drift_pct"]))


def test_a_transient_drift_is_measured_again_after_a_fresh_canary(
    lab: tuple[EmbeddedServer, RunningAgent, Client],
) -> None:
    server, _, client = lab
    dataset = campaign(client, canary_limit_pct=LIMIT_PCT)
    assert dataset.progress.remeasured == 0, "the host drifted past the limit on its own"
    before = campaign_times(client, dataset.id)
    n_points = len(client.device_canary(client.devices()[0].id))

    # canaries c0 m1 m2 c1 m3 m4 c2 m5 m6 c3: c2 slow, c3 (now) back at speed
    slow_down_a_canary(server, dataset.id, factor=3.0, from_last=1)
    again = client.wait_dataset(dataset.id, timeout_s=300)

    drifted = 2 * EVERY  # the archs on either side of the slow canary
    assert again.state == DatasetState.done and again.progress.remeasured == drifted
    assert again.progress.done == len(ARCHS)
    after = campaign_times(client, dataset.id)
    assert after[: len(ARCHS) - drifted] == before[: len(ARCHS) - drifted]
    assert min(after[-drifted:]) > max(before)
    # a fresh canary opens the re-measures, one comes every 2 jobs, one closes them
    points = client.device_canary(client.devices()[0].id)
    assert len(points) == n_points + 1 + drifted // EVERY
    assert [r["canary"] for r in export_rows(client, dataset.id)] == ["ok"] * len(ARCHS)


def test_a_lasting_drift_is_kept_and_marked_not_measured_again(
    lab: tuple[EmbeddedServer, RunningAgent, Client],
) -> None:
    server, _, client = lab
    dataset = campaign(client, canary_limit_pct=LIMIT_PCT)
    assert dataset.progress.remeasured == 0, "the host drifted past the limit on its own"
    slow_down_a_canary(server, dataset.id, factor=3.0, from_last=0)  # still slow now
    again = client.wait_dataset(dataset.id, timeout_s=300)
    assert again.state == DatasetState.done and again.progress.remeasured == 0

    rows = export_rows(client, dataset.id)
    assert [r["canary"] for r in rows] == ["ok"] * (len(ARCHS) - EVERY) + ["drifted"] * EVERY
    # slowed 3x: +200 % against a reference taken at the campaign's start; a host busy then
    # lowers the figure (the reference is slow too), so the check is the limit itself
    assert all(float(r["canary_drift_pct"]) > LIMIT_PCT for r in rows[-EVERY:])
    archive = zipfile.ZipFile(io.BytesIO(client.export_dataset(dataset.id, DatasetFormat.latbench)))
    assert f"{EVERY} of {len(ARCHS)} rows drifted" in archive.read("README.md").decode()


def test_with_re_measuring_off_a_transient_drift_is_marked(
    lab: tuple[EmbeddedServer, RunningAgent, Client],
) -> None:
    server, _, client = lab
    dataset = campaign(client, canary_limit_pct=LIMIT_PCT, remeasure_drifted=0)
    slow_down_a_canary(server, dataset.id, factor=3.0, from_last=1)
    again = client.wait_dataset(dataset.id, timeout_s=300)
    assert again.state == DatasetState.done and again.progress.remeasured == 0
    rows = export_rows(client, dataset.id)
    assert [r["canary"] for r in rows].count("drifted") == 2 * EVERY


def test_an_unknown_device_has_no_canary(
    lab: tuple[EmbeddedServer, RunningAgent, Client],
) -> None:
    _, _, client = lab
    with pytest.raises(ApiError) as err:
        client.device_canary("no-such-device")
    assert err.value.status == 404


@pytest.mark.postgres
def test_two_claims_storing_the_canary_model_at_once_share_one_row_and_blob(
    pg_url: str, tmp_path: Path
) -> None:
    """Every agent's first claim wants the canary model at the same instant: the transaction
    that loses the insert takes the winner's row and deletes nothing of it."""
    settings = make_settings(tmp_path, pg_url)
    engine = create_db_engine(pg_url)
    sessions = sessionmaker(engine, expire_on_commit=False)
    blobs = open_blob_store(settings)
    CanaryModels._ids.clear()  # as in a fresh server process
    stored = threading.Event()
    ids: list[str] = []

    def first() -> None:
        with session_scope(sessions) as session:
            ids.append(CanaryModels(blobs, settings).model_id(session, ModelFormat.onnx))
            stored.set()
            time.sleep(1.5)  # the other one reads "none", exports and waits on our insert

    def second() -> None:
        stored.wait(60)
        with session_scope(sessions) as session:
            ids.append(CanaryModels(blobs, settings).model_id(session, ModelFormat.onnx))

    try:
        threads = [threading.Thread(target=first), threading.Thread(target=second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert len(ids) == 2 and ids[0] == ids[1]
        with session_scope(sessions) as session:
            assert session.scalar(sa.select(sa.func.count()).select_from(Model)) == 1
        assert blobs.exists(ids[0])
    finally:
        engine.dispose()
