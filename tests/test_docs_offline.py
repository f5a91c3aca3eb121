"""/docs works offline: Swagger UI's page and assets all come from the app, none from a CDN."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
from fastapi import FastAPI
from starlette.exceptions import StarletteDeprecationWarning
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from latlab.server.dashboard.docs import install_docs

# This Starlette prefers httpx2 for its TestClient and warns (an error under the suite's
# filterwarnings) when it falls back to httpx, which works as well.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx`", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

#: the attribute values that make a browser fetch something: src="..." and href="..."
LINK = re.compile(r"""\b(?:src|href)\s*=\s*["']([^"']*)["']""", re.IGNORECASE)
#: the content type each kind of asset must be served with, by file suffix
CONTENT_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


def make_app() -> FastAPI:
    """A bare app as the server builds it: no FastAPI CDN docs, one route of its own."""
    app = FastAPI(title="Dummy", docs_url=None, redoc_url=None)

    @app.get("/ping")
    def ping() -> dict[str, str]:
        return {"pong": "ok"}

    return app


def static_mounts(app: FastAPI) -> list[Mount]:
    return [r for r in app.routes if isinstance(r, Mount) and r.name == "static"]


def docs_links(client: TestClient) -> list[str]:
    response = client.get("/docs")
    assert response.status_code == 200
    return LINK.findall(response.text)


@pytest.fixture
def client() -> TestClient:
    app = make_app()
    install_docs(app)
    return TestClient(app)


def test_docs_page_is_html(client: TestClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "SwaggerUIBundle(" in response.text
    assert "Dummy — API" in response.text


def test_docs_page_references_only_local_urls(client: TestClient) -> None:
    html = client.get("/docs").text
    links = LINK.findall(html)
    assert len(links) >= 3  # the bundle, the stylesheet, the favicon
    for link in links:
        assert link.startswith("/") and not link.startswith("//"), link
    assert "http://" not in html and "https://" not in html
    assert "cdn" not in html.lower()
    assert "url: '/openapi.json'" in html


def test_every_asset_the_page_references_is_served(client: TestClient) -> None:
    links = docs_links(client)
    assert {Path(link).suffix for link in links} == set(CONTENT_TYPES)
    for link in links:
        response = client.get(link)
        assert response.status_code == 200, link
        assert CONTENT_TYPES[Path(link).suffix] in response.headers["content-type"], link
        assert len(response.content) > 500, link


def test_the_bundle_and_stylesheet_are_the_real_swagger_ui(client: TestClient) -> None:
    bundle = client.get("/static/swagger/swagger-ui-bundle.js")
    css = client.get("/static/swagger/swagger-ui.css")
    assert len(bundle.content) > 1_000_000 and b"SwaggerUIBundle" in bundle.content
    assert len(css.content) > 100_000 and b".swagger-ui" in css.content


def test_openapi_json_still_works_and_leaves_docs_out(client: TestClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/ping" in paths
    assert "/docs" not in paths
    assert client.get("/ping").json() == {"pong": "ok"}


def test_installing_twice_adds_no_second_mount_or_route() -> None:
    app = make_app()
    install_docs(app)
    install_docs(app)
    assert len(static_mounts(app)) == 1
    assert [getattr(r, "path", None) for r in app.routes].count("/docs") == 1
    client = TestClient(app)
    for link in docs_links(client):
        assert client.get(link).status_code == 200, link


def test_an_existing_static_mount_is_kept(tmp_path: Path) -> None:
    app = make_app()
    theirs = StaticFiles(directory=tmp_path)
    app.mount("/static", theirs, name="static")
    install_docs(app)
    install_docs(app)
    assert [m.app for m in static_mounts(app)] == [theirs]
    assert TestClient(app).get("/docs").status_code == 200


def test_docs_urls_follow_the_root_path() -> None:
    app = make_app()
    install_docs(app)
    client = TestClient(app, root_path="/lab")
    html = client.get("/docs").text
    assert "url: '/lab/openapi.json'" in html
    assert all(link.startswith("/lab/static/swagger/") for link in LINK.findall(html))
