"""How fast do the dashboard's pages answer on a large lab, and what do they look like?

A lab of its own (``latlab.lab.local``: an embedded server and this machine's CPU agent):
``--devices`` imported devices with ``--archs`` NAS-Bench-201 latencies each (made up from the
arch's MACs: the numbers do not matter here; 100 x 100 = 10,000 measurements by default), a
campaign of ``--measure`` archs timed by the agent (samples and per-op rows), a LUT from them,
a GCN trained on them, and ``--queued`` jobs waiting in the queue. Then each page is fetched
``--rounds`` times over HTTP with a signed-in cookie: the median and the slowest per page.
``--screenshots DIR`` also saves a PNG of each page, drawn by Chromium (Playwright), as the
README shows them.

    python bench/dashboard_pages.py [--devices 100] [--archs 100] [--screenshots docs/screenshots]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from pydantic import SecretStr

from latlab.client import Client
from latlab.lab.local import local_lab
from latlab.lut.table import LutSource
from latlab.opkey import graph_cost
from latlab.predictors.pipeline import train_for_device
from latlab.predictors.presets import PRESETS
from latlab.progress import follow_lut
from latlab.runtimes.onnxruntime import OnnxRuntimeConfig
from latlab.schemas import DatasetCreate, JobPurpose, LutCreate
from latlab.server.config import Settings
from latlab.spaces.nb201 import Nb201

FAST = OnnxRuntimeConfig(warmup_s=0.2, timed_s=0.5)
CHROMIUM = "/usr/bin/chromium"


def seed(client: Client, device_id: str, args: argparse.Namespace) -> dict[str, str]:
    """Fill the lab; the pages to fetch, by name."""
    space = Nb201()
    archs = [space.from_index(i) for i in range(0, space.size, space.size // args.archs)][
        : args.archs
    ]
    macs = {a.string: graph_cost(space.graph(a)).macs for a in archs}
    lines = ["space,arch,device,latency_ms"]
    for d in range(args.devices):
        scale = 0.5 + d / args.devices
        lines += [f"nb201,{a},phone-{d:03d},{scale * (0.2 + m / 2e7):.4f}" for a, m in macs.items()]
    t0 = time.perf_counter()
    imported = client.import_dataset([("lab.csv", "\n".join(lines).encode())], "published")
    print(
        f"seeded   {args.devices} devices x {args.archs} archs = "
        f"{args.devices * args.archs:,} measurements in {time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    campaign = client.create_dataset(
        DatasetCreate(
            name="nb201-local",
            space="nb201",
            n=args.measure,
            seed=3,
            device_ids=[device_id],
            config=FAST,
        )
    )
    client.wait_dataset(campaign.id, timeout_s=3600)
    lut = client.create_lut(
        LutCreate(
            device_id=device_id,
            source=LutSource.measured_ops,
            config=FAST,
            dataset_id=campaign.id,
        )
    )
    follow_lut(client, lut.id, timeout_s=600)
    run = train_for_device(client, device_id, PRESETS["latlab"], dataset_ids=[campaign.id])
    assert run.registered is not None
    model_id = client.measurements(device_id=device_id, limit=1)[0].model_id
    assert model_id is not None
    for i in range(args.queued):  # no device matches: they wait (each its own selector)
        client.create_job(model_id, selector={"name": f"no-such-device-{i}"}, config=FAST)
    [measurement] = [
        m
        for m in client.measurements(device_id=device_id, limit=50, newest_first=True)
        if m.purpose == JobPurpose.measure
    ][:1]
    print(f"measured {args.measure} archs on this CPU; LUT, GCN, {args.queued} queued jobs")
    return {
        "lab": "/",
        "device": f"/lab/{device_id}",
        "queue": "/queue",
        "queue (queued)": "/queue?state=queued",
        "datasets": "/datasets",
        "dataset (10,000 rows)": f"/datasets/{imported.id}",
        "campaign": f"/datasets/{campaign.id}",
        "measurement": f"/measurements/{measurement.id}",
        "models": "/models",
        "model": f"/models/{model_id}",
        "predictors & LUTs": "/predictors",
        "predictor": f"/predictors/{run.registered.id}",
        "lut": f"/luts/{lut.id}",
    }


def time_pages(url: str, api_key: str, pages: dict[str, str], rounds: int) -> None:
    with httpx.Client(base_url=url, timeout=120) as http:
        signed = http.post("/signin", data={"api_key": api_key, "next": "/"})
        assert signed.status_code in (200, 303), signed.text
        print(f"\n{'page':<24}{'median ms':>10}{'max ms':>9}{'kB':>8}")
        for name, path in pages.items():
            seconds, size = [], 0
            for _ in range(rounds):
                t0 = time.perf_counter()
                answer = http.get(path)
                seconds.append(time.perf_counter() - t0)
                assert answer.status_code == 200, (path, answer.status_code)
                size = len(answer.content)
            print(
                f"{name:<24}{1e3 * statistics.median(seconds):>10.1f}"
                f"{1e3 * max(seconds):>9.1f}{size / 1e3:>8.1f}"
            )


def screenshots(url: str, api_key: str, pages: dict[str, str], out: Path) -> None:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    shots = {
        "lab": "lab",
        "queue (queued)": "queue",
        "campaign": "dataset",
        "measurement": "measurement",
        "model": "model",
        "predictor": "predictor",
    }
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        tab = browser.new_page(base_url=url, viewport={"width": 1280, "height": 860})
        tab.goto("/signin")
        tab.fill("input[name=api_key]", api_key)
        tab.click("form[action='/signin'] button[type=submit]")
        for name, file in shots.items():
            tab.goto(pages[name])
            tab.wait_for_load_state("networkidle")
            tab.screenshot(path=str(out / f"{file}.png"))
        browser.close()
    print(f"screenshots in {out}: {', '.join(f'{f}.png' for f in shots.values())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--archs", type=int, default=100)
    parser.add_argument("--measure", type=int, default=20)
    parser.add_argument("--queued", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--screenshots", type=Path)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="latlab-dashboard-"))
    api_key = secrets.token_urlsafe(16)
    settings = Settings(
        data_dir=root,
        api_keys=[SecretStr(api_key)],
        enroll_key=SecretStr(secrets.token_urlsafe(16)),
    )
    with local_lab(settings) as lab:
        pages = seed(lab.client, lab.device.id, args)
        time_pages(lab.url, api_key, pages, args.rounds)
        if args.screenshots is not None:
            screenshots(lab.url, api_key, pages, args.screenshots)


if __name__ == "__main__":
    main()
