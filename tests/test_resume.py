"""A campaign or a LUT resumes after a server restart (while preparing or while measuring)
and measures nothing twice."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from latlab.client import Client
from latlab.runtimes.onnxruntime import OnnxRuntimeConfig
from latlab.schemas import DatasetCreate, JobState, LutCreate, LutSource, RegisterIn
from latlab.server.blobstore import LocalBlobStore
from latlab.server.datasets.builder import prepare_next
from latlab.server.datasets.service import create_campaign
from latlab.server.db import create_db_engine, session_scope, upgrade_to_head
from latlab.server.devices.service import register_device
from latlab.server.embedded import EmbeddedServer
from latlab.server.tables import Dataset, DatasetArch, DatasetEntry, Job, Model
from latlab.spaces.nb201 import Nb201
from tests.factories import API_KEY, ENROLL_KEY, cpu_descriptor, make_settings, wait_for
from tests.test_e2e import start_agent

FAST = OnnxRuntimeConfig(
    protocol="fixed", warmup_runs=1, warmup_s=0, timed_runs=5, timed_s=0, profile_runs=1
)


def test_a_campaign_measured_across_a_server_restart_measures_each_arch_once(
    tmp_path: Path, db_url: str
) -> None:
    settings = make_settings(tmp_path, db_url)
    first = EmbeddedServer(settings).start()
    agent = start_agent(first.url, tmp_path, name="cpu-0")
    try:
        with Client(first.url, API_KEY) as client:
            device = client.devices()[0]
            dataset = client.create_dataset(
                DatasetCreate(
                    name="r", space="nb201", n=8, seed=5, device_ids=[device.id], config=FAST
                )
            )
            wait_for(lambda: client.dataset(dataset.id).progress.done >= 2, timeout_s=120)
        first.stop()  # the agent keeps running and retries with backoff

        second = EmbeddedServer(make_settings(tmp_path, db_url), port=first.port).start()
        try:
            with Client(second.url, API_KEY) as client:
                done = client.wait_dataset(dataset.id, timeout_s=240, poll_s=0.2)
                jobs = client.jobs(limit=100)
                report = [(j.state.value, j.attempts, j.error) for j in jobs]
                assert done.progress.done == 8 and done.progress.failed == 0, report
                assert len(jobs) == 8 and all(j.state == JobState.done for j in jobs), report
                measured = client.measurements(device_id=device.id, limit=100)
                assert len(measured) == 8
                assert len({m.model_id for m in measured}) == 8
        finally:
            agent.close()
            second.stop()
    finally:
        agent.close()


def test_preparing_resumes_where_it_stopped(tmp_path: Path, db_url: str) -> None:
    """No server here: the campaign is prepared step by step, and the engine (the server's
    state) is thrown away half-way, as a restart would."""
    engine = create_db_engine(db_url)
    upgrade_to_head(engine)
    blobs = LocalBlobStore(tmp_path / "blobs")
    settings = make_settings(tmp_path, db_url)
    sessions = sessionmaker(engine, expire_on_commit=False)
    with session_scope(sessions) as session:
        reg = register_device(
            session,
            SecretStr(ENROLL_KEY),
            ENROLL_KEY,
            RegisterIn(name="cpu", descriptor=cpu_descriptor()),
        )
        body = DatasetCreate(name="p", space="nb201", n=6, seed=2, device_ids=[reg.device_id])
        dataset_id = create_campaign(session, body).id
    try:
        for _ in range(3):
            with session_scope(sessions) as session:
                assert prepare_next(session, blobs, settings)
        engine.dispose()
        engine = create_db_engine(db_url)
        sessions = sessionmaker(engine, expire_on_commit=False)
        steps = 0
        while True:
            with session_scope(sessions) as session:
                if not prepare_next(session, blobs, settings):
                    break
            steps += 1
        assert steps == 3 + 1  # the 3 archs left, then the step that marks it measuring
        with session_scope(sessions) as session:
            assert session.get_one(Dataset, dataset_id).state == "measuring"
            unprepared = select(func.count()).where(DatasetArch.model_id.is_(None))
            assert session.scalar(unprepared) == 0
            assert session.scalar(select(func.count()).select_from(Job)) == 6
            assert session.scalar(select(func.count()).select_from(Model)) == 6
            assert session.scalar(select(func.count()).select_from(DatasetEntry)) == 6
    finally:
        engine.dispose()


def test_a_micro_model_lut_measured_across_a_server_restart_times_each_kernel_once(
    tmp_path: Path, sqlite_url: str
) -> None:
    settings = make_settings(tmp_path, sqlite_url)
    first = EmbeddedServer(settings).start()
    agent = start_agent(first.url, tmp_path, name="cpu-lut")
    second: EmbeddedServer | None = None
    try:
        with Client(first.url, API_KEY) as client:
            device = client.devices()[0]
            archs = [a.string for a in Nb201().sample(2, seed=3)]
            body = LutCreate(
                device_id=device.id,
                source=LutSource.micro_models,
                config=FAST,
                space="nb201",
                archs=archs,
            )
            lut = client.create_lut(body)
            wait_for(lambda: client.lut(lut.id).progress.done >= 3, timeout_s=120)
        first.stop()

        second = EmbeddedServer(
            make_settings(tmp_path, settings.database_url), port=first.port
        ).start()
        with Client(second.url, API_KEY) as client:
            done = client.wait_lut(lut.id, timeout_s=240, poll_s=0.2)
            assert done.state == "ready", done.error
            jobs = client.jobs(limit=1000)
            assert len(jobs) == done.progress.kernels == done.entries
            assert all(j.state == JobState.done for j in jobs)
            assert done.calibration is not None and done.calibration.n_models == 0  # none measured
    finally:
        agent.close()
        if second is not None:
            second.stop()
