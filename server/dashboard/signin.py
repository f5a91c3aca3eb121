"""Sign in and out of the dashboard (``session`` says what the cookie holds)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from latlab.server.dashboard.render import render
from latlab.server.dashboard.session import COOKIE, issue
from latlab.server.deps import StateDep, key_scope

__all__ = ["local_path", "router"]

router = APIRouter(include_in_schema=False)


def local_path(target: str, fallback: str = "/") -> str:
    """``target`` if it is a path of this site, else ``fallback``: where a form sends the
    browser next is never another site's address."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return fallback


def _lifetime(seconds: float) -> str:
    return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds / 60:g} min"


@router.get("/signin", response_class=HTMLResponse)
def signin_form(
    request: Request, state: StateDep, next: Annotated[str, Query(max_length=2000)] = "/"
) -> Response:
    lifetime = _lifetime(state.settings.dashboard_session_s)
    return render(
        request, "signin.html", None, next=local_path(next), lifetime=lifetime, message=None
    )


@router.post("/signin", response_class=HTMLResponse)
def signin(
    request: Request,
    state: StateDep,
    api_key: Annotated[str, Form(max_length=500)],
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    key = api_key.strip()
    if key_scope(state.settings, key) is None:
        return render(
            request,
            "signin.html",
            None,
            status_code=401,
            next=local_path(next),
            lifetime=_lifetime(state.settings.dashboard_session_s),
            message="unknown API key",
        )
    response = RedirectResponse(local_path(next), status_code=303)
    response.set_cookie(
        COOKIE,
        issue(state.settings, key),
        max_age=int(state.settings.dashboard_session_s),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/signout")
def signout() -> Response:
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response
