"""How fast does the dataset builder measure a search space, and how much of its time is
spent measuring?

A campaign of N NAS-Bench-201 archs (default 200) with the protocol's default config on this
machine's CPU: an embedded server (SQLite, or ``--database-url``) and one agent in a process
of its own (``latlab agent``, as deployed). Prints:

- archs/hour: measurements finished per hour of wall time, campaign created -> last result;
- efficiency = (sum of the protocol's own run time: warm-up + timed runs) / wall time.
  Goal: >= 0.8. The rest is split into the runner's other work (session creation, the
  separate per-op profiled pass) and everything outside the runner (claim, download, upload,
  storing), per arch.

    python bench/dataset_build.py [--n 200] [--seed 0] [--no-profile] [--database-url URL]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import tempfile
import time
from pathlib import Path

from _lab import bench_lab

from latlab.client import Client
from latlab.progress import follow_dataset
from latlab.runtimes.onnxruntime import OnnxRuntimeConfig
from latlab.schemas import DatasetCreate, MeasurementOut


def all_measurements(client: Client, device_id: str) -> list[MeasurementOut]:
    rows: list[MeasurementOut] = []
    while True:
        page = client.measurements(device_id=device_id, samples=True, limit=1000, offset=len(rows))
        rows += page
        if len(page) < 1000:
            return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-profile", action="store_true", help="skip the per-op pass")
    parser.add_argument("--database-url", help="default: SQLite in a temporary directory")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="latlab-bench-"))
    api_key, enroll_key = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    config = OnnxRuntimeConfig(profile_ops=not args.no_profile)
    with bench_lab(work, api_key, enroll_key, args.database_url) as (client, device, settings):
        t0 = time.monotonic()
        dataset = client.create_dataset(
            DatasetCreate(
                name=f"bench-nb201-{args.n}",
                space="nb201",
                n=args.n,
                seed=args.seed,
                device_ids=[device.id],
                config=config,
            )
        )
        done = follow_dataset(client, dataset.id, timeout_s=24 * 3600, poll_s=0.5)
        wall_s = time.monotonic() - t0
        rows = all_measurements(client, device.id)

    protocol_s = [(m.warmup.total_ms + sum(m.samples_ms or [])) / 1e3 for m in rows]
    runner_s = [m.timing_wall_s for m in rows]
    n = len(rows)
    print(
        f"\ndataset builder: {n} NAS-Bench-201 archs on {device.descriptor.cpu_model}, "
        f"{done.progress.failed} failed, 1 agent process, server on {settings.resolved_database_url.split(':')[0]}"
    )
    print(
        f"config: warm-up {config.warmup_runs} runs/{config.warmup_s} s, timed "
        f"{config.timed_runs} runs/{config.timed_s} s, {config.threads} thread, "
        f"per-op profile {'on' if config.profile_ops else 'off'}"
    )
    print(f"wall time          {wall_s:9.1f} s   ({wall_s / n:.3f} s per arch)")
    print(f"archs/hour         {n / wall_s * 3600:9.0f}")
    print(
        f"protocol run time  {sum(protocol_s):9.1f} s   ({statistics.mean(protocol_s):.3f} s per arch)"
    )
    print(
        f"runner, other      {sum(runner_s) - sum(protocol_s):9.1f} s   "
        f"({(sum(runner_s) - sum(protocol_s)) / n:.3f} s per arch: session creation, profiled pass)"
    )
    print(
        f"outside runner     {wall_s - sum(runner_s):9.1f} s   "
        f"({(wall_s - sum(runner_s)) / n:.3f} s per arch: claim, download, upload, store)"
    )
    efficiency = sum(protocol_s) / wall_s
    print(
        f"efficiency         {efficiency:9.3f}     (goal >= 0.8: {'met' if efficiency >= 0.8 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
