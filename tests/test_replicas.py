"""Two server replicas behind one PostgreSQL database and one S3 bucket, as in production: what
one replica stores, the other serves; an agent on one measures a model uploaded to the other;
a claim waiting on one wakes for a job queued through the other. Each replica has its own data
directory, so nothing reaches it but through the bucket and the database."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from latlab.client import Client
from latlab.schemas import ClaimedJob, DatasetCreate, JobState
from latlab.server.embedded import EmbeddedServer
from tests.factories import API_KEY, cnn_bytes, make_settings, register, scrape, wait_for
from tests.s3 import bucket_keys, new_bucket_name, s3_client, s3_settings
from tests.test_e2e import FAST, start_agent

pytestmark = pytest.mark.postgres


@pytest.fixture
def bucket() -> str:
    return new_bucket_name()


@contextlib.contextmanager
def two_replicas(
    tmp_path: Path, pg_url: str, s3_endpoint: str, bucket: str, **overrides: object
) -> Iterator[tuple[EmbeddedServer, EmbeddedServer]]:
    """Servers ``a`` and ``b``: one database, one bucket, a data directory each."""
    settings = {**s3_settings(s3_endpoint, bucket), **overrides}
    with (
        EmbeddedServer(make_settings(tmp_path / "a", pg_url, **settings)) as a,
        EmbeddedServer(make_settings(tmp_path / "b", pg_url, **settings)) as b,
    ):
        yield a, b


@pytest.fixture
def replicas(
    tmp_path: Path, pg_url: str, s3_endpoint: str, bucket: str
) -> Iterator[tuple[EmbeddedServer, EmbeddedServer]]:
    with two_replicas(tmp_path, pg_url, s3_endpoint, bucket) as servers:
        yield servers


def test_an_agent_on_one_replica_measures_a_model_uploaded_to_the_other(
    replicas: tuple[EmbeddedServer, EmbeddedServer], tmp_path: Path, s3_endpoint: str, bucket: str
) -> None:
    a, b = replicas
    data = cnn_bytes(seed=7)
    running = start_agent(b.url, tmp_path)
    try:
        with Client(a.url, API_KEY) as user_a, Client(b.url, API_KEY) as user_b:
            model = user_a.upload_model("m.onnx", data=data)
            served = httpx.get(
                f"{b.url}/v1/models/{model.id}/content",
                headers={"Authorization": f"Bearer {API_KEY}"},
            )
            assert served.status_code == 200 and served.content == data
            job = user_a.create_job(model.id, selector={}, config=FAST)
            [done] = user_b.wait_jobs([job.id], timeout_s=120)
            assert done.state == JobState.done, done.error
            [m] = user_a.measurements(job_id=job.id)
    finally:
        running.close()
    assert m.model_id == model.id and m.stats.n >= 10
    assert bucket_keys(s3_endpoint, bucket) == [f"blobs/{model.id[:2]}/{model.id[2:]}"]
    for replica in (a, b):
        assert not (replica.settings.data_dir / "blobs").exists(), "no blob kept locally"


def test_a_campaign_created_on_one_replica_is_prepared_once_and_measured_through_the_other(
    replicas: tuple[EmbeddedServer, EmbeddedServer], tmp_path: Path, s3_endpoint: str, bucket: str
) -> None:
    """Both replicas run the background loop that exports archs and queues their jobs; each arch
    is prepared by one of them (its row taken with SKIP LOCKED), never twice."""
    a, b = replicas
    running = start_agent(b.url, tmp_path)
    try:
        with Client(a.url, API_KEY) as user_a, Client(b.url, API_KEY) as user_b:
            [device] = user_b.devices()
            created = user_a.create_dataset(
                DatasetCreate(
                    name="two-replicas",
                    space="nb201",
                    n=8,
                    seed=5,
                    device_ids=[device.id],
                    config=FAST.model_copy(update={"profile_ops": False}),
                )
            )
            done = user_b.wait_dataset(created.id, timeout_s=300)
            jobs = user_a.jobs(limit=1000)
            models = user_b.models(limit=1000)
    finally:
        running.close()
    assert done.state == "done" and done.progress.done == 8 and done.progress.failed == 0
    assert len(jobs) == 8 and all(j.state == JobState.done and j.attempts == 1 for j in jobs)
    assert len({j.model_id for j in jobs}) == len(models)
    assert bucket_keys(s3_endpoint, bucket) == sorted(
        f"blobs/{m.id[:2]}/{m.id[2:]}" for m in models
    )


def test_healthz_reports_a_blob_store_that_went_away(
    replicas: tuple[EmbeddedServer, EmbeddedServer], s3_endpoint: str, bucket: str
) -> None:
    a, _ = replicas
    assert httpx.get(f"{a.url}/healthz").status_code == 200
    s3_client(s3_endpoint).delete_bucket(Bucket=bucket)
    r = httpx.get(f"{a.url}/healthz")
    assert r.status_code == 503
    assert "does not exist" in r.json()["error"]["message"]


def test_a_claim_waiting_on_one_replica_wakes_for_a_job_queued_through_the_other(
    tmp_path: Path, pg_url: str, s3_endpoint: str, bucket: str
) -> None:
    """LISTEN/NOTIFY between replicas: the claim waits up to 5 minutes and the claims' poll is
    10 minutes, so only the other replica's notification can hand it the job within the
    minute the test gives it."""
    slow_poll = {"claim_poll_s": 600.0, "claim_wait_max_s": 300.0}
    with two_replicas(tmp_path, pg_url, s3_endpoint, bucket, **slow_poll) as (a, b):
        agent, registered = register(b.url)
        claimed: list[ClaimedJob | None] = []
        with agent, Client(a.url, API_KEY) as user:
            model = user.upload_model("m.onnx", data=cnn_bytes(seed=3))
            waiter = threading.Thread(target=lambda: claimed.append(agent.claim(wait_s=300)))
            waiter.start()
            wait_for(lambda: scrape(b.url).get("latlab_claims_waiting") == 1)
            job = user.create_job(model.id, device_id=registered.device_id, config=FAST)
            waiter.join(timeout=60)
    assert claimed and claimed[0] is not None, "the claim on b was not woken by a's job"
    assert claimed[0].job_id == job.id
