"""The dashboard over plain HTTP (the browser tests drive it in Chromium): the signed cookie,
every page with data, pages for unknown ids, text from the database never markup, and the
write actions' guards (read-write key, same-origin form)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from latlab.client import Client
from latlab.errors import ApiError
from latlab.latency_model import to_artifact
from latlab.server.config import Settings
from latlab.server.dashboard.session import issue, verify
from latlab.server.embedded import EmbeddedServer
from latlab.spaces.nb201 import Nb201
from tests.factories import API_KEY, READ_API_KEY, register
from tests.test_predictors import random_predictor

SPACE = Nb201()


@contextlib.contextmanager
def signed_in(server: EmbeddedServer, key: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as http:
        answer = http.post("/signin", data={"api_key": key, "next": "/"})
        assert answer.status_code == 303 and "latlab_session" in http.cookies
        yield http


@pytest.fixture
def rw(live_server: EmbeddedServer) -> Iterator[httpx.Client]:
    with signed_in(live_server, API_KEY) as http:
        yield http


@pytest.fixture
def ro(live_server: EmbeddedServer) -> Iterator[httpx.Client]:
    with signed_in(live_server, READ_API_KEY) as http:
        yield http


def imported(client: Client, device: str = "phone-a", n: int = 30) -> tuple[str, str]:
    """An import of ``n`` NB201 latencies on one device: (dataset id, device id)."""
    rows = "".join(
        f"nb201,{SPACE.from_index(i).string},{device},{1 + i / 1000}\n" for i in range(n)
    )
    done = client.import_dataset([("d.csv", f"space,arch,device,latency_ms\n{rows}".encode())], "d")
    return done.id, done.device_ids[0]


# --------------------------------------------------------------------------- the cookie


def test_a_cookie_holds_no_key_and_is_refused_tampered_expired_or_once_its_key_is_gone(
    tmp_path: object,
) -> None:
    settings = Settings(
        api_keys=[SecretStr("rw-secret-key")],
        read_api_keys=[SecretStr("ro-secret-key")],
        dashboard_session_s=600,
    )
    cookie = issue(settings, "rw-secret-key", now=1_000_000)
    assert "rw-secret-key" not in cookie
    assert verify(settings, cookie, now=1_000_100) is not None
    assert verify(settings, cookie, now=1_000_100).can_write  # type: ignore[union-attr]
    assert not verify(settings, issue(settings, "ro-secret-key", now=1e6), now=1e6 + 1).can_write  # type: ignore[union-attr]
    key_id, expiry, mac = cookie.split(".")
    for forged in [
        f"{key_id}.{int(expiry) + 10_000}.{mac}",  # a later expiry
        f"{key_id}.{expiry}.{mac[:-1]}{'0' if mac[-1] != '0' else '1'}",
        f"{'0' * 16}.{expiry}.{mac}",
        "", "a.b.c", "x" * 500, f"{key_id}.{expiry}",
    ]:  # fmt: skip
        assert verify(settings, forged, now=1_000_100) is None, forged
    assert verify(settings, cookie, now=1_000_601) is None  # expired
    # the key moved to read-only: the same cookie reads, no longer writes
    demoted = Settings(read_api_keys=[SecretStr("rw-secret-key")])
    assert not verify(demoted, cookie, now=1_000_100).can_write  # type: ignore[union-attr]
    assert verify(Settings(api_keys=[SecretStr("other")]), cookie, now=1_000_100) is None


def test_signing_in_goes_back_only_to_a_page_of_this_site(live_server: EmbeddedServer) -> None:
    with httpx.Client(base_url=live_server.url) as http:
        for asked, landed in [
            ("/queue?state=queued", "/queue?state=queued"),
            ("//evil.example/x", "/"),
            ("https://evil.example/", "/"),
            ("/\\evil.example", "/"),
        ]:
            answer = http.post("/signin", data={"api_key": READ_API_KEY, "next": asked})
            assert answer.headers["location"] == landed, asked
        assert http.post("/signin", data={"api_key": "nope"}).status_code == 401
        assert http.get("/signin").headers["content-security-policy"].startswith("default-src")


# --------------------------------------------------------------------------- pages


def test_every_page_answers_with_its_data_and_an_unknown_id_is_a_page_saying_so(
    client: Client, ro: httpx.Client
) -> None:
    dataset_id, device_id = imported(client)
    predictor = client.upload_predictor(
        to_artifact(random_predictor()),
        device_id=device_id,
        runtime="unknown",
        space="nb201",
        training={"datasets": [dataset_id]},
    )
    pages = {
        "/": "phone-a",
        f"/lab/{device_id}": "No canary timings",
        "/queue": "No jobs",
        "/datasets": "imported",
        f"/datasets/{dataset_id}": "latency on phone-a",
        "/models": "No models yet",
        "/measurements/1": "No samples stored",  # an imported figure
        "/predictors": f"v{predictor.version}",
        f"/predictors/{predictor.id}": "30 of the 30 archs",
    }
    for path, expected in pages.items():
        answer = ro.get(path)
        assert answer.status_code == 200, (path, answer.text[:300])
        assert expected in answer.text, path
        assert "text/html" in answer.headers["content-type"]
    # the predictor's scatter: one point per arch it was trained on
    scatter = ro.get(f"/predictors/{predictor.id}").text
    assert len(re.findall(r'class="point"', scatter)) == 30
    for path in ["/lab/nope", "/datasets/nope", "/models/nope", "/measurements/99999",
                 "/predictors/nope", "/luts/nope"]:  # fmt: skip
        answer = ro.get(path)
        assert answer.status_code == 404 and "<h1>404</h1>" in answer.text, path
    assert ro.get("/measurements/not-a-number").status_code == 422


def test_text_from_the_database_is_shown_as_text_never_as_markup(
    client: Client, ro: httpx.Client
) -> None:
    name = '<script>alert("x")</script>&'
    _, device_id = imported(client, device=name, n=3)
    for path in ["/", f"/lab/{device_id}", "/datasets"]:
        page = ro.get(path).text
        assert "<script>alert" not in page and "&lt;script&gt;alert" in page, path


def test_no_cookie_or_a_bad_one_is_sent_to_sign_in(live_server: EmbeddedServer) -> None:
    with httpx.Client(base_url=live_server.url) as http:
        answer = http.get("/datasets?x=1")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/signin?next=%2Fdatasets%3Fx%3D1"
        http.cookies.set("latlab_session", "0" * 16 + ".9999999999.abc")
        assert http.get("/").status_code == 303
        # the API never takes the cookie: /v1 wants its bearer key
    with signed_in(live_server, API_KEY) as http:
        assert http.get("/v1/devices").status_code == 401


# --------------------------------------------------------------------------- write actions


def test_a_read_write_key_makes_a_predictor_current_and_a_read_only_one_cannot(
    client: Client, rw: httpx.Client, ro: httpx.Client
) -> None:
    _, device_id = imported(client)
    first, second = (
        client.upload_predictor(
            to_artifact(random_predictor()), device_id=device_id, runtime="x", space="nb201"
        )
        for _ in range(2)
    )
    assert client.predictor(second.id).current
    refused = ro.post(f"/predictors/{first.id}/current", data={"back": "/predictors"})
    assert refused.status_code == 403 and "read-only" in refused.text
    # another site's form, even with the read-write cookie
    forged = rw.post(
        f"/predictors/{first.id}/current",
        data={"back": "/"},
        headers={"Origin": "https://evil.example"},
    )
    assert forged.status_code == 403
    assert not client.predictor(first.id).current
    done = rw.post(
        f"/predictors/{first.id}/current",
        data={"back": f"/predictors/{first.id}"},
        headers={"Origin": str(rw.base_url).rstrip("/")},
    )
    assert done.status_code == 303 and done.headers["location"] == f"/predictors/{first.id}"
    assert client.predictor(first.id).current and not client.predictor(second.id).current


def test_revoking_a_device_from_its_page_locks_its_agent_out(
    live_server: EmbeddedServer, rw: httpx.Client, ro: httpx.Client
) -> None:
    agent, registered = register(live_server.url, name="to-revoke")
    with agent:
        assert "Revoke" not in ro.get(f"/lab/{registered.device_id}").text
        assert "Revoke" in rw.get(f"/lab/{registered.device_id}").text
        answer = rw.post(f"/lab/{registered.device_id}/revoke", data={"back": "//evil.example"})
        assert answer.status_code == 303 and answer.headers["location"] == "/"
        with pytest.raises(ApiError) as err:
            agent.heartbeat()
        assert err.value.status == 401
