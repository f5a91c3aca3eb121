"""Many agents on one queue: every job is done exactly once, on SQLite and on PostgreSQL; and
on SQLite, writers get the write lock in the order they asked for it."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from latlab.agent.config import AgentSettings
from latlab.agent.main import connect_agent
from latlab.client import Client
from latlab.runtimes.onnxruntime import OnnxRuntimeConfig
from latlab.schemas import JobState
from latlab.server import db as server_db
from latlab.server.config import Settings
from latlab.server.db import FairLock, create_db_engine
from latlab.server.embedded import EmbeddedServer
from tests.factories import API_KEY, ENROLL_KEY, cnn_bytes
from tests.fake_runner import FakeRunner

N_AGENTS = 20
N_JOBS = 200


@pytest.mark.slow
def test_twenty_agents_finish_two_hundred_jobs_exactly_once(
    server_on_both: EmbeddedServer, tmp_path: Path
) -> None:
    server = server_on_both
    with Client(server.url, API_KEY) as client:
        model = client.upload_model("m.onnx", data=cnn_bytes())
        stop = threading.Event()
        runners = [FakeRunner(sleep_s=0.001) for _ in range(N_AGENTS)]
        agents = [
            connect_agent(
                AgentSettings(
                    server_url=server.url,
                    enroll_key=SecretStr(ENROLL_KEY),
                    name=f"agent-{i}",
                    state_file=tmp_path / f"agent-{i}.json",
                    cache_dir=tmp_path / "cache" / str(i),
                    claim_wait_s=0.5,
                ),
                runners={"onnxruntime": runners[i]},
                stop=stop,
            )
            for i in range(N_AGENTS)
        ]
        threads = [threading.Thread(target=a.run) for a in agents]
        for t in threads:
            t.start()
        # distinct configs (seed) so the 200 requests are 200 jobs, not deduplicated into one
        job_ids = [
            client.create_job(model.id, selector={}, config=OnnxRuntimeConfig(seed=i)).id
            for i in range(N_JOBS)
        ]
        try:
            finished = client.wait_jobs(job_ids, timeout_s=240)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
            for a in agents:
                a.client.close()

        assert [j.state for j in finished] == [JobState.done] * N_JOBS
        done_by_agents = [job_id for a in agents for job_id in a.stats.done]
        assert sorted(done_by_agents) == sorted(job_ids)  # each job once, none twice
        assert sum(len(r.timed) for r in runners) == N_JOBS  # nothing was timed twice
        measurements = client.measurements(limit=1000)
        assert sorted(m.job_id for m in measurements) == sorted(job_ids)
        assert len({j.claimed_by for j in finished}) > 1  # the work was shared


def test_the_fair_lock_hands_over_in_arrival_order_and_gives_up_after_its_timeout() -> None:
    lock = FairLock()
    assert lock.acquire(1.0)
    order: list[int] = []
    waiters = []
    for i in range(3):
        waiter = threading.Thread(target=lambda i=i: (lock.acquire(30.0), order.append(i)))
        waiter.start()
        waiters.append(waiter)
        while len(lock._waiters) <= i:  # queued before the next one starts
            time.sleep(0.001)
    assert not lock.acquire(0.01)  # a fourth waiter gives up, and leaves the queue
    assert len(lock._waiters) == 3
    for expected in range(3):
        lock.release()
        waiters[expected].join(5)
        assert order == list(range(expected + 1))
    lock.release()
    assert lock.acquire(0.0)  # free again


def test_a_loop_of_short_sqlite_transactions_does_not_starve_another_writer(
    tmp_path: Path,
) -> None:
    """What a campaign's preparation (one arch per transaction, back to back) does to an agent's
    result upload: SQLite's busy handler polls with growing sleeps and lost the race every time,
    past its timeout. In turn, the upload waits for at most the transaction in progress."""
    engine = create_db_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (who TEXT)")
    done = [0]
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            with engine.begin() as conn:
                conn.exec_driver_sql("INSERT INTO t VALUES ('loop')")
                time.sleep(0.002)
            done[0] += 1

    looping = threading.Thread(target=loop)
    looping.start()
    try:
        while done[0] < 5:
            time.sleep(0.001)
        waits = []
        for _ in range(20):
            asked_at = done[0]
            with engine.begin() as conn:
                conn.exec_driver_sql("INSERT INTO t VALUES ('other')")
                waits.append(done[0] - asked_at)
    finally:
        stop.set()
        looping.join(10)
        engine.dispose()
    assert max(waits) <= 1, waits  # the loop's transactions it waited through


def test_a_request_that_waits_out_another_process_lock_is_a_503_and_stores_nothing(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process (a second server on the same file, a script) holding SQLite's write lock
    past the timeout: the request is refused with 503 and Retry-After, not a 500."""
    monkeypatch.setattr(server_db, "SQLITE_LOCK_TIMEOUT_S", 0.2)
    with EmbeddedServer(settings) as server, Client(server.url, API_KEY) as client:
        other = sqlite3.connect(settings.resolved_database_url.split("///", 1)[1])
        other.isolation_level = None
        other.execute("BEGIN IMMEDIATE")
        try:
            answer = httpx.post(
                f"{server.url}/v1/models",
                headers={"Authorization": f"Bearer {API_KEY}"},
                files={"file": ("m.onnx", cnn_bytes())},
            )
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "1"
        assert answer.json()["error"]["message"] == "the server is busy; retry shortly"
        assert client.models() == []
        assert client.upload_model("m.onnx", data=cnn_bytes()).format == "onnx"


@pytest.mark.postgres
def test_a_pooled_connection_the_database_dropped_is_replaced_before_use(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database closes connections that sit idle in the pool (a restart, an idle timeout):
    the next checkout of one idle past the threshold pings it and gets a fresh connection,
    while connections given back moments ago are used without a round trip."""
    import psycopg
    from sqlalchemy import text

    engine = create_db_engine(pg_url)
    try:
        with engine.connect() as conn:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        admin = pg_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(admin, autocommit=True) as other:
            other.execute("SELECT pg_terminate_backend(%s)", (pid,))
        monkeypatch.setattr(server_db, "PING_AFTER_IDLE_S", 0.0)
        with engine.connect() as conn:  # the dropped one is pinged, discarded, replaced
            assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() != pid
    finally:
        engine.dispose()
