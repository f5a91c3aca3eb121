"""Sign in and out of the dashboard (``session`` says what the cookie holds)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from latlab.server.dashboard.render import render
from latlab.server.dashboard.session import COOKIE, issue, scope_of_key
from latlab.server.deps import StateDep

__all__ = ["router"]

router = APIRouter(include_in_schema=False)


def _next(target: str) -> str:
    """A path of this site to go to after signing in (never another site's address)."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def _lifetime(seconds: float) -> str:
    return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds / 60:g} min"


@router.get("/signin", response_class=HTMLResponse)
def signin_form(
    request: Request, state: StateDep, next: Annotated[str, Query(max_length=2000)] = "/"
) -> Response:
    lifetime = _lifetime(state.settings.dashboard_session_s)
    return render(request, "signin.html", None, next=_next(next), lifetime=lifetime, message=None)


@router.post("/signin", response_class=HTMLResponse)
def signin(
    request: Request,
    state: StateDep,
    api_key: Annotated[str, Form(max_length=500)],
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    key = api_key.strip()
    if scope_of_key(state.settings, key) is None:
        return render(
            request,
            "signin.html",
            None,
            status_code=401,
            next=_next(next),
            lifetime=_lifetime(state.settings.dashboard_session_s),
            message="unknown API key",
        )
    response = RedirectResponse(_next(next), status_code=303)
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
