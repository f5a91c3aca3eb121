"""The lab in a browser: pages served by ``latlab server`` itself at ``/`` (templates rendered on
the server, charts as inline SVG, one small script for live tables), signed in with a user API
key kept as a signed cookie; everything they load ships in this package (``static/``)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from latlab.server.dashboard.docs import install_docs
from latlab.server.dashboard.pages import SignInRequired
from latlab.server.dashboard.pages import router as pages
from latlab.server.dashboard.signin import router as signin

__all__ = ["install_dashboard"]


def install_dashboard(app: FastAPI) -> None:
    """The pages, the sign-in, ``/static`` and an offline ``/docs`` (the app is created with
    ``docs_url=None``)."""
    install_docs(app)  # mounts static/ at /static too
    app.include_router(signin)
    app.include_router(pages)

    @app.exception_handler(SignInRequired)
    async def _sign_in(_: Request, exc: SignInRequired) -> Response:
        from urllib.parse import quote

        return RedirectResponse(f"/signin?next={quote(exc.next_url, safe='')}", status_code=303)
