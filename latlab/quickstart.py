"""``latlab quickstart``: the whole loop on this machine, end to end, on real measurements.

An embedded server on SQLite, a local CPU agent, a few small CNNs built with onnx.helper,
each timed with the measurement protocol and profiled per op; a table at the end.
"""

from __future__ import annotations

import json
import secrets
import shutil
import threading
import time
from pathlib import Path
from typing import TextIO

import onnx
from pydantic import SecretStr

from agent.config import AgentSettings
from agent.main import connect_agent
from latlab.client import Client
from latlab.demo_models import QUICKSTART_CNNS, make_cnn
from latlab.schemas import JobState, MeasurementOut, ModelOut, RuntimeConfig
from server.config import Settings
from server.embedded import EmbeddedServer

__all__ = ["run_quickstart"]


def run_quickstart(
    root: Path, out: TextIO, config: RuntimeConfig | None = None
) -> list[MeasurementOut]:
    """Run the loop in ``root`` (wiped first); print progress and the table to ``out``."""
    if root.exists():
        shutil.rmtree(root)
    (root / "models").mkdir(parents=True)
    api_key, enroll_key = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    # the format `latlab server` reads, so LATLAB_DATA_DIR=<root> latlab server serves this data
    (root / "credentials.json").write_text(
        json.dumps({"api_key": api_key, "enroll_key": enroll_key}, indent=2)
    )
    (root / "credentials.json").chmod(0o600)
    settings = Settings(
        data_dir=root,
        api_keys=[SecretStr(api_key)],
        enroll_key=SecretStr(enroll_key),
        reap_every_s=1.0,
    )
    t0 = time.monotonic()
    with EmbeddedServer(settings) as server:
        print(f"server   {server.url}  (SQLite {settings.resolved_database_url})", file=out)
        agent_settings = AgentSettings(
            server_url=server.url,
            enroll_key=SecretStr(enroll_key),
            name="local-cpu",
            state_file=root / "agent.json",
            cache_dir=root / "agent-cache",
            claim_wait_s=1.0,
        )
        stop = threading.Event()
        agent = connect_agent(agent_settings, stop=stop)
        worker = threading.Thread(target=agent.run, name="latlab-agent", daemon=True)
        worker.start()
        try:
            with Client(server.url, api_key) as client:
                device = client.devices()[0]
                d = device.descriptor
                print(f"agent    {device.name} ({d.cpu_model}, {d.cpu_cores} cores)", file=out)
                rows = _measure(client, root, device.id, config or RuntimeConfig(), out)
        finally:
            stop.set()
            worker.join(timeout=60)
            agent.client.close()
    print(_render(rows), file=out)
    print(
        f"\n{len(rows)} models measured in {time.monotonic() - t0:.1f} s; data in {root}/", file=out
    )
    print(
        f"browse it: LATLAB_DATA_DIR={root} latlab server, then "
        f"LATLAB_API_KEY=<api_key in {root}/credentials.json> latlab measurements",
        file=out,
    )
    return [m for _, m in rows]


def _measure(
    client: Client, root: Path, device_id: str, config: RuntimeConfig, out: TextIO
) -> list[tuple[ModelOut, MeasurementOut]]:
    models: dict[str, ModelOut] = {}
    job_ids: list[str] = []
    for spec in QUICKSTART_CNNS:
        path = root / "models" / f"{spec.name}.onnx"
        onnx.save(make_cnn(spec), str(path))
        model = client.upload_model(path)
        job = client.create_job(model.id, device_id=device_id, config=config)
        models[job.id] = model
        job_ids.append(job.id)
    print(
        f"models   {len(job_ids)} CNNs uploaded; timing each (warm-up "
        f"{config.warmup_runs} runs/{config.warmup_s} s, timed {config.timed_runs} runs/"
        f"{config.timed_s} s, {config.threads} thread)",
        file=out,
    )
    rows = []
    for i, job in enumerate(client.iter_finished(job_ids, timeout_s=600), start=1):
        if job.state != JobState.done:
            raise RuntimeError(f"job {job.id} {job.state.value}: {job.error}")
        m = client.measurements(job_id=job.id, ops=True)[0]
        print(
            f"  [{i}/{len(job_ids)}] {models[job.id].filename:<12} {m.stats.median_ms:8.3f} ms",
            file=out,
            flush=True,
        )
        rows.append((models[job.id], m))
    return rows


def _render(rows: list[tuple[ModelOut, MeasurementOut]]) -> str:
    header = (
        f"\n{'model':<14}{'MMACs':>8}{'median_ms':>11}{'p10_ms':>9}{'p90_ms':>9}"
        f"{'n':>6}{'ops':>5}{'ops_sum_ms':>12}  slowest kernel"
    )
    lines = [header]
    for model, m in rows:
        top = max(m.ops or [], key=lambda o: o.dur_us, default=None)
        top_txt = f"{top.op_type} {top.dur_us:.0f} us" if top else "-"
        macs = model.summary.macs or 0
        lines.append(
            f"{model.filename.removesuffix('.onnx'):<14}{macs / 1e6:>8.1f}{m.stats.median_ms:>11.3f}"
            f"{m.stats.p10_ms:>9.3f}{m.stats.p90_ms:>9.3f}{m.stats.n:>6}{len(m.ops or []):>5}"
            f"{sum(o.dur_us for o in m.ops or []) / 1e3:>12.3f}  {top_txt}"
        )
    return "\n".join(lines)
