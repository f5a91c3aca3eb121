"""The API docs at ``/docs``: Swagger UI served from the package itself, no CDN.

FastAPI's own ``/docs`` page loads Swagger UI from a CDN (jsdelivr), so offline it is blank.
:func:`install_docs` serves the same page from the copy of ``swagger-ui-dist`` in
``static/swagger/`` (its version, origin and licence: ``static/swagger/README.txt``).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

__all__ = ["install_docs"]

#: The package's static files (Swagger UI under ``swagger/``), served at ``/static``.
STATIC_DIR = Path(__file__).parent / "static"
STATIC_URL = "/static"
STATIC_NAME = "static"
DOCS_URL = "/docs"
#: The /docs route's name, so that a second :func:`install_docs` call adds no second route.
DOCS_ROUTE_NAME = "latlab_swagger_ui"

SWAGGER_JS = f"{STATIC_URL}/swagger/swagger-ui-bundle.js"
SWAGGER_CSS = f"{STATIC_URL}/swagger/swagger-ui.css"
SWAGGER_FAVICON = f"{STATIC_URL}/swagger/favicon-32x32.png"


def install_docs(app: FastAPI) -> None:
    """Serve Swagger UI at ``GET /docs`` with its assets from this package, not a CDN.

    Mounts :data:`STATIC_DIR` at ``/static`` (name ``"static"``) unless a route named
    ``"static"`` is mounted already (another part of the server may mount the same directory),
    and adds ``GET /docs`` (left out of the OpenAPI schema) unless this function added it before;
    calling it twice is harmless. The page loads ``/openapi.json`` (``app.openapi_url``) and the
    Swagger UI bundle, stylesheet and favicon from ``/static/swagger/``, every URL prefixed with
    the request's ``root_path`` as FastAPI's own docs page does. With ``app.openapi_url`` set to
    ``None`` there is no schema to show and no ``/docs`` is added.

    Create the app with ``FastAPI(docs_url=None, redoc_url=None)``: otherwise FastAPI's own CDN
    pages exist as well, and its ``/docs``, registered first, answers instead of this one. This
    function does not rely on that: it works on any app.
    """
    if not any(getattr(route, "name", None) == STATIC_NAME for route in app.routes):
        app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name=STATIC_NAME)

    openapi_url = app.openapi_url
    if openapi_url is None:
        return
    if any(getattr(route, "name", None) == DOCS_ROUTE_NAME for route in app.routes):
        return

    @app.get(DOCS_URL, include_in_schema=False, name=DOCS_ROUTE_NAME)
    async def swagger_ui_html(request: Request) -> HTMLResponse:
        root = str(request.scope.get("root_path", "")).rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=app.title + " — API",
            swagger_js_url=root + SWAGGER_JS,
            swagger_css_url=root + SWAGGER_CSS,
            swagger_favicon_url=root + SWAGGER_FAVICON,
            oauth2_redirect_url=None,
            swagger_ui_parameters={"persistAuthorization": False},
        )
