"""The dashboard in a real browser (Debian's Chromium driven by Playwright) on a live server
with real measurements: NAS-Bench-201 archs timed by a local agent. Every request the page
makes to another host is refused, so the pages prove to work offline.

Without Chromium the tests skip with the reason; under CI (``CI=true``) they fail instead."""

from __future__ import annotations

import csv
import io
import os
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from latlab.client import Client
from latlab.lut.table import LutSource
from latlab.schemas import DatasetCreate, DatasetState, DeviceOut, JobState, LutCreate
from latlab.server.embedded import EmbeddedServer
from tests.factories import API_KEY, READ_API_KEY, cnn_bytes, make_settings
from tests.test_e2e import FAST, start_agent

CHROMIUM = os.environ.get("LATLAB_TEST_CHROMIUM", "/usr/bin/chromium")
TIMEOUT_MS = 60_000

pytestmark = pytest.mark.browser


def _chromium() -> str:
    """The browser's path, or skip (fail under CI) saying what is missing."""
    reason = None
    if not Path(CHROMIUM).exists():
        reason = f"no Chromium at {CHROMIUM} (apt-get install chromium chromium-driver)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = "Playwright is not installed (pip install -e '.[dev]')"
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests under CI: {reason}")
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    path = _chromium()
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=path, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def lab(
    tmp_path_factory: pytest.TempPathFactory, _sqlite_template: Path
) -> Iterator[tuple[EmbeddedServer, Client, DeviceOut, str]]:
    """A live server, a real local agent, and a campaign of three NB201 archs measured by it
    (with per-op rows): ``(server, client, device, dataset id)``."""
    root = tmp_path_factory.mktemp("dashboard")
    shutil.copyfile(_sqlite_template, root / "latlab.db")
    with EmbeddedServer(make_settings(root, f"sqlite:///{root / 'latlab.db'}")) as server:
        agent = start_agent(server.url, root, name="bench-cpu")
        try:
            with Client(server.url, API_KEY) as client:
                [device] = client.devices()
                dataset = client.create_dataset(
                    DatasetCreate(
                        name="nb201-three",
                        space="nb201",
                        archs=["1", "2", "3"],
                        device_ids=[device.id],
                        config=FAST,
                    )
                )
                done = client.wait_dataset(dataset.id, timeout_s=300)
                assert done.state == DatasetState.done and done.progress.done == 3
                yield server, client, device, dataset.id
        finally:
            agent.close()


@pytest.fixture
def page(browser: Any, lab: tuple[EmbeddedServer, Client, DeviceOut, str]) -> Iterator[Any]:
    """A fresh browser context (no cookie) that may reach the lab's server and nothing else."""
    server = lab[0]
    context = browser.new_context(base_url=server.url, accept_downloads=True)
    context.set_default_timeout(TIMEOUT_MS)
    outside: list[str] = []

    def only_the_server(route: Any) -> None:
        if route.request.url.startswith(server.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_server)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    context.close()
    assert not outside, f"the pages asked other hosts: {outside}"
    assert not errors, f"script errors: {errors}"


def sign_in(page: Any, key: str, path: str = "/") -> None:
    page.goto(path)
    page.fill("input[name=api_key]", key)
    page.click("form[action='/signin'] button[type=submit]")
    page.wait_for_load_state()


# --------------------------------------------------------------------------- sign-in


def test_a_page_asks_to_sign_in_and_a_key_becomes_a_cookie_that_is_not_the_key(
    page: Any, lab: tuple[EmbeddedServer, Client, DeviceOut, str]
) -> None:
    page.goto("/queue?state=done")
    assert page.url.endswith("/signin?next=%2Fqueue%3Fstate%3Ddone")
    page.fill("input[name=api_key]", "not-a-key")
    page.click("form[action='/signin'] button[type=submit]")
    assert page.locator("[role=alert]").inner_text() == "unknown API key"

    sign_in(page, READ_API_KEY, "/queue?state=done")
    assert page.url.endswith("/queue?state=done")  # back where it was going
    [cookie] = page.context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert READ_API_KEY not in cookie["value"] and READ_API_KEY not in page.content()
    assert page.evaluate("document.cookie") == ""  # no script can read it
    assert page.locator("header .scope").inner_text() == "read-only"

    page.click("form.signout button")
    page.goto("/")
    assert "/signin" in page.url


# --------------------------------------------------------------------------- the lab


def test_the_lab_shows_the_agent_s_device_online_with_its_runtime(
    page: Any, lab: tuple[EmbeddedServer, Client, DeviceOut, str]
) -> None:
    _, _, device, _ = lab
    sign_in(page, READ_API_KEY)
    row = page.locator(f"tr[data-device='{device.id}']")
    assert row.locator(".badge").inner_text() == "online"
    assert "onnxruntime" in row.inner_text() and device.name in row.inner_text()
    row.locator("a").first.click()
    assert page.url.endswith(f"/lab/{device.id}")
    assert page.locator("h1").inner_text().startswith(device.name)
    assert page.locator("button.danger").count() == 0  # a read-only key sees no revoke


# --------------------------------------------------------------------------- measurements


def test_a_measurement_draws_its_samples_and_its_per_op_breakdown(
    page: Any, lab: tuple[EmbeddedServer, Client, DeviceOut, str]
) -> None:
    _, client, device, _ = lab
    [measured] = client.measurements(device_id=device.id, limit=1)
    full = client.measurement(measured.id)
    assert full.samples_ms and full.ops
    sign_in(page, READ_API_KEY, f"/measurements/{measured.id}")
    assert f"{full.stats.median_ms:.3g}" in page.locator("#stats").inner_text()
    histogram = page.locator("#samples-histogram svg rect.bar")
    assert histogram.count() > 0 and histogram.first.is_visible()
    assert page.locator("#samples-run-order svg .line").count() == 1
    bars = page.locator("#per-op svg rect.bar")
    assert bars.count() == min(len(full.ops), 15) + (len(full.ops) > 15)
    slowest = max(full.ops, key=lambda o: o.dur_us)
    assert slowest.op_type in page.locator("#per-op svg").inner_html()
    assert bars.first.bounding_box()["width"] > 0  # drawn, not just in the markup


# --------------------------------------------------------------------------- datasets


def test_a_campaign_s_page_follows_its_progress_to_done_and_its_exports_read_back(
    page: Any, lab: tuple[EmbeddedServer, Client, DeviceOut, str], tmp_path: Path
) -> None:
    _, client, device, _ = lab
    dataset = client.create_dataset(
        DatasetCreate(
            name="followed",
            space="nb201",
            archs=["10", "11"],
            device_ids=[device.id],
            config=FAST,
        )
    )
    sign_in(page, READ_API_KEY, f"/datasets/{dataset.id}")
    # the page polls: the state turns done without a reload
    page.wait_for_selector("#dataset-state.state-done", timeout=180_000)
    bar = page.locator("#dataset-progress [role=progressbar]")
    assert bar.get_attribute("aria-valuenow") == bar.get_attribute("aria-valuemax") == "2"

    page.reload()
    assert page.locator("svg.chart-histogram").count() == 1
    with page.expect_download() as download:
        page.click("a[href$='/export/csv']")
    path = tmp_path / "export.csv"
    download.value.save_as(path)
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert sorted(r["arch_index"] for r in rows) == ["10", "11"]
    medians = [m.stats.median_ms for m in client.measurements(device_id=device.id, limit=1000)]
    for r in rows:  # the figures the agent measured
        assert r["device_id"] == device.id
        assert any(float(r["latency_ms"]) == pytest.approx(ms, rel=1e-9) for ms in medians)
    with page.expect_download() as download:
        page.click("a[href$='/export/parquet']")
    download.value.save_as(tmp_path / "export.zip")
    with zipfile.ZipFile(tmp_path / "export.zip") as z:
        assert "measurements.parquet" in z.namelist()


# --------------------------------------------------------------------------- the queue


def queued_job(client: Client) -> str:
    """A job no device matches: it stays queued until cancelled."""
    model = client.upload_model("tiny.onnx", cnn_bytes(seed=7))
    return client.create_job(model.id, selector={"name": "no-such-device"}, config=FAST).id


def test_a_read_write_key_cancels_a_queued_job_from_the_queue(
    page: Any, lab: tuple[EmbeddedServer, Client, DeviceOut, str]
) -> None:
    _, client, _, _ = lab
    job_id = queued_job(client)
    sign_in(page, API_KEY, "/queue?state=queued")
    row = page.locator(f"tr[data-job='{job_id}']")
    assert row.locator(".badge").inner_text() == "queued"
    row.locator("button", has_text="Cancel").click()
    page.wait_for_load_state()
    assert client.job(job_id).state == JobState.cancelled


def test_a_read_only_key_sees_no_cancel_and_a_posted_cancel_is_refused(
    page: Any, lab: tuple[EmbeddedServer, Client, DeviceOut, str]
) -> None:
    server, client, _, _ = lab
    job_id = queued_job(client)
    sign_in(page, READ_API_KEY, "/queue?state=queued")
    row = page.locator(f"tr[data-job='{job_id}']")
    assert row.count() == 1 and row.locator("button").count() == 0
    answer = page.request.post(f"/queue/{job_id}/cancel", form={"back": "/queue"})
    assert answer.status == 403 and "read-only" in answer.text()
    assert client.job(job_id).state == JobState.queued
    # no cookie at all: nothing happens either
    plain = httpx.post(f"{server.url}/queue/{job_id}/cancel", data={"back": "/"})
    assert plain.status_code == 303 and "/signin" in plain.headers["location"]
    assert client.job(job_id).state == JobState.queued
    client.cancel_job(job_id)


def test_the_queue_updates_itself_while_it_is_open(
    page: Any, lab: tuple[EmbeddedServer, Client, DeviceOut, str]
) -> None:
    _, client, _, _ = lab
    sign_in(page, READ_API_KEY, "/queue?state=queued")
    job_id = queued_job(client)  # after the page loaded
    page.wait_for_selector(f"tr[data-job='{job_id}']", timeout=20_000)
    client.cancel_job(job_id)
    page.wait_for_selector(f"tr[data-job='{job_id}']", state="detached", timeout=20_000)


# --------------------------------------------------------------------------- models, LUTs, docs


def test_a_model_lists_its_measurements_across_devices(
    page: Any, lab: tuple[EmbeddedServer, Client, DeviceOut, str]
) -> None:
    _, client, device, _ = lab
    [measured] = client.measurements(device_id=device.id, limit=1)
    assert measured.model_id is not None
    sign_in(page, READ_API_KEY, f"/models/{measured.model_id}")
    table = page.locator("#across-devices").inner_text()
    assert device.name in table and f"#{measured.id}" in table
    assert page.locator("svg.chart-bars rect.bar").count() > 0  # op counts


def test_a_lut_built_from_the_campaign_shows_its_entries_and_calibration(
    page: Any, lab: tuple[EmbeddedServer, Client, DeviceOut, str]
) -> None:
    _, client, device, dataset_id = lab
    lut = client.create_lut(
        LutCreate(
            device_id=device.id, source=LutSource.measured_ops, config=FAST, dataset_id=dataset_id
        )
    )
    lut = client.wait_lut(lut.id, timeout_s=120)
    assert lut.calibration is not None
    sign_in(page, READ_API_KEY, "/predictors")
    page.click(f"#luts a[href='/luts/{lut.id}']")
    assert page.locator("#entries tbody tr").count() == lut.entries
    assert f"{lut.calibration.n_models} whole models" in page.content()
    assert page.locator("svg.chart-bars rect.bar").count() == min(lut.entries, 15)


def test_the_api_docs_load_offline_with_an_authorize_button(page: Any) -> None:
    page.goto("/docs")
    page.wait_for_selector(".swagger-ui .info .title")
    assert page.locator("button.authorize").count() == 1
