"""Many agents on one queue: every job is done exactly once, on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
from pathlib import Path

from pydantic import SecretStr

from agent.config import AgentSettings
from agent.main import connect_agent
from latlab.client import Client
from latlab.schemas import JobState, RuntimeConfig
from server.embedded import EmbeddedServer
from tests.factories import API_KEY, ENROLL_KEY, cnn_bytes
from tests.fake_runner import FakeRunner

N_AGENTS = 20
N_JOBS = 200


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
            client.create_job(model.id, selector={}, config=RuntimeConfig(seed=i)).id
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
