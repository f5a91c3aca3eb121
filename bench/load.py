"""The queue under load, on PostgreSQL, over loopback only: N agents with a fake short runner
(the queue is what is measured, not a model) drain M jobs from 1 or 2 ``latlab server``
processes sharing one database and one blob directory.

M jobs are queued first (the rate is printed), then the N agents start; prints jobs/s from
their start to the last result stored, the latency of claims that got a job (p50, p99), the
CPU the servers and the agents spent per job, the server's time per request by route (from its
/metrics), and checks that every job is done exactly once: each job `done` after one attempt,
one measurement row per job, none lost by an agent.

    python bench/load.py [--agents 100] [--jobs 10000] [--servers 1] \
        [--pg postgresql+psycopg://postgres@127.0.0.1:5432/postgres]

It creates (and drops first) the database ``latlab_load`` on that server.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import secrets
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg
from _lab import start_server
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from latlab.agent.config import AgentSettings
from latlab.agent.errors import Interrupted
from latlab.agent.main import connect_agent
from latlab.client import AgentClient, Client
from latlab.demo_models import DEMO_CNNS, make_cnn
from latlab.runtimes import RuntimeConfig
from latlab.runtimes.onnxruntime import OnnxRuntimeConfig
from latlab.schemas import ClaimedJob, JobPurpose, JobState, RuntimeInfo, Timing, WarmupInfo

DATABASE = "latlab_load"
#: The fake runner's "measurement": long enough to be a job, short enough to load the queue.
RUN_S = 0.002


class QuickRunner:
    """Stands in for a runtime: the queue, not a model, is under test."""

    name = "onnxruntime"

    def info(self) -> RuntimeInfo:
        return RuntimeInfo(name=self.name, version="load", providers=["CPUExecutionProvider"])

    def time(
        self, model_path: Path, config: RuntimeConfig, should_stop: Callable[[], bool]
    ) -> Timing:
        if should_stop():
            raise Interrupted("stop requested")
        time.sleep(RUN_S)
        return Timing(
            runtime=self.name,
            runtime_version="load",
            provider="CPUExecutionProvider",
            threads=1,
            input_shapes={"input": [1, 3, 16, 16]},
            warmup=WarmupInfo(n=0, total_ms=0.0),
            samples_ms=[RUN_S * 1e3],
            timing_wall_s=RUN_S,
            op_profile=None,
            ops=[],
        )


class TimedClaims:
    """Records how long each claim that got a job took, around an agent client's claim."""

    def __init__(self) -> None:
        self.latencies_s: list[float] = []
        self._lock = threading.Lock()

    def wrap(self, client: AgentClient) -> None:
        claim = client.claim

        def timed(wait_s: float) -> ClaimedJob | None:
            started = time.perf_counter()
            job = claim(wait_s)
            if job is not None:
                with self._lock:
                    self.latencies_s.append(time.perf_counter() - started)
            return job

        client.claim = timed  # type: ignore[method-assign]


def fresh_database(admin_url: str) -> str:
    url = make_url(admin_url)
    conninfo = f"host={url.host} port={url.port or 5432} user={url.username} dbname={url.database}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DATABASE}")
    return url.set(database=DATABASE).render_as_string(hide_password=False)


def start_servers(n: int, env: dict[str, str]) -> tuple[list[subprocess.Popen[bytes]], list[str]]:
    """One at a time: the first runs the migrations, the next finds the schema at head."""
    started = [start_server(env) for _ in range(n)]
    return [p for p, _ in started], [u for _, u in started]


def cpu_seconds(procs: list[subprocess.Popen[bytes]]) -> tuple[float, float]:
    """CPU seconds used so far by the server processes (from /proc) and by this process."""
    ticks = os.sysconf("SC_CLK_TCK")
    servers = 0.0
    for proc in procs:
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        servers += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    own = resource.getrusage(resource.RUSAGE_SELF)
    return servers, own.ru_utime + own.ru_stime


def finished_count(url: str) -> int:
    """Jobs done, failed or cancelled, from the server's /metrics gauges: one GROUP BY, so
    the waiting adds next to nothing to the server CPU the bench measures (listing every
    pending job's state twice a second cost the server 1-2 ms per job)."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    return sum(
        int(float(value))
        for state, value in re.findall(r'^latlab_jobs\{state="(\w+)"\} (\S+)$', text, re.M)
        if state in {JobState.done, JobState.failed, JobState.cancelled}
    )


def route_seconds(urls: list[str]) -> dict[str, tuple[float, int]]:
    """Mean server time and count per route, summed over the servers' /metrics."""
    sums: dict[str, list[float]] = {}
    for url in urls:
        for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
            match = re.match(
                r'latlab_http_request_seconds_(sum|count)\{route="([^"]+)"\} (\S+)', line
            )
            if match:
                kind, route, value = match.groups()
                entry = sums.setdefault(route, [0.0, 0.0])
                entry[0 if kind == "sum" else 1] += float(value)
    return {r: (s / n, int(n)) for r, (s, n) in sums.items() if n}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agents", type=int, default=100)
    p.add_argument("--jobs", type=int, default=10_000)
    p.add_argument("--servers", type=int, default=1, choices=[1, 2])
    p.add_argument(
        "--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres", help="admin URL"
    )
    args = p.parse_args()

    api_key, enroll_key = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    root = Path(tempfile.mkdtemp(prefix="latlab-load-"))
    env = {
        **os.environ,
        "LATLAB_DATABASE_URL": fresh_database(args.pg),
        "LATLAB_DATA_DIR": str(root),
        "LATLAB_API_KEYS": api_key,
        "LATLAB_ENROLL_KEY": enroll_key,
    }
    procs, urls = start_servers(args.servers, env)
    stop = threading.Event()
    claims_timer = TimedClaims()
    try:
        with Client(urls[0], api_key, timeout_s=60) as client:
            data = make_cnn(DEMO_CNNS[0]).SerializeToString()
            model = client.upload_model("load.onnx", data=data)
            print(f"{args.servers} server(s), {args.agents} agents, {args.jobs} jobs")
            started = time.perf_counter()

            local = threading.local()
            opened: list[Client] = []

            def queue(i: int) -> str:
                # one client per thread and server (connections kept alive)
                if not hasattr(local, "clients"):
                    local.clients = [Client(u, api_key, timeout_s=60) for u in urls]
                    opened.extend(local.clients)
                c = local.clients[i % len(urls)]
                # a distinct seed per job: identical pending requests would be one job
                return c.create_job(model.id, selector={}, config=OnnxRuntimeConfig(seed=i)).id

            with ThreadPoolExecutor(8) as pool:
                job_ids = list(pool.map(queue, range(args.jobs), chunksize=64))
            for c in opened:
                c.close()
            queued_s = time.perf_counter() - started
            print(
                f"queued {len(job_ids)} jobs in {queued_s:.1f} s ({len(job_ids) / queued_s:,.0f}/s)"
            )

            agents = []
            for i in range(args.agents):
                settings = AgentSettings(
                    server_url=urls[i % len(urls)],
                    enroll_key=SecretStr(enroll_key),
                    name=f"load-{i}",
                    state_file=root / "agents" / f"{i}.json",
                    cache_dir=root / "agent-cache" / str(i),
                    claim_wait_s=20.0,  # long polls: an idle agent waits to be woken
                )
                agent = connect_agent(settings, {"onnxruntime": QuickRunner()}, stop)
                claims_timer.wrap(agent.client)
                agents.append(agent)
            workers = [threading.Thread(target=a.run, daemon=True) for a in agents]
            cpu_before = cpu_seconds(procs)
            started = time.perf_counter()
            for w in workers:
                w.start()
            while finished_count(urls[0]) < len(job_ids):
                if time.perf_counter() - started > 3600:
                    raise SystemExit("the agents did not drain the queue in an hour")
                time.sleep(0.5)
            elapsed_s = time.perf_counter() - started
            cpu_after = cpu_seconds(procs)
            finished = client.wait_jobs(job_ids, timeout_s=60)
            stop.set()
            for w in workers:
                w.join(timeout=60)
            routes = route_seconds(urls)
            measurements = []
            offset = 0
            while page := client.measurements(limit=10_000, offset=offset):
                measurements += page
                offset += len(page)
    finally:
        stop.set()
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=60)

    print("server time per request, by route (mean ms, requests):")
    for route, (mean_s, n) in sorted(routes.items(), key=lambda kv: -kv[1][0] * kv[1][1])[:8]:
        print(f"  {route:45s} {mean_s * 1e3:8.1f} {n:8d}")
    servers_s, agents_s = (
        after - before for after, before in zip(cpu_after, cpu_before, strict=True)
    )
    n_jobs = max(len(job_ids), 1)
    print(
        f"CPU per job while draining: servers {servers_s / n_jobs * 1e3:.1f} ms, agents "
        f"{agents_s / n_jobs * 1e3:.1f} ms ({os.cpu_count()} cores; PostgreSQL not counted)"
    )
    claims = sorted(claims_timer.latencies_s)
    done = [j for j in finished if j.state == JobState.done]
    once = [j for j in done if j.attempts == 1]
    # the device canaries the server leased between the jobs are measured too; counted apart
    canaries = [m for m in measurements if m.purpose == JobPurpose.canary]
    by_job = [m.job_id or "" for m in measurements if m.purpose == JobPurpose.measure]
    lost = sum(len(a.stats.lost) for a in agents)
    print(f"device canaries timed between the jobs: {len(canaries)}")
    print(
        f"{args.agents} agents drained them in {elapsed_s:.1f} s: {len(done) / elapsed_s:,.0f} jobs/s"
    )
    print(
        f"claims that got a job: {len(claims)}, p50 {statistics.median(claims) * 1e3:.1f} ms, "
        f"p99 {claims[int(0.99 * (len(claims) - 1))] * 1e3:.1f} ms"
    )
    checks = {
        "every job done": len(done) == len(job_ids),
        "each after one attempt": len(once) == len(job_ids),
        "one measurement per job": sorted(by_job) == sorted(job_ids),
        "no result lost": lost == 0,
        "each job done by one agent": sum(len(a.stats.done) for a in agents)
        == len(job_ids) + len(canaries),
    }
    for name, ok in checks.items():
        print(f"  {'ok ' if ok else 'FAIL'} {name}")
    if not all(checks.values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
