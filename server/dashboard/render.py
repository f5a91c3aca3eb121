"""Pages from Jinja2 templates (autoescaped: every value from the database is text, never
markup; charts come in as ``Markup`` from ``charts``), and the page answer for an error."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from latlab.server.dashboard.charts import format_number
from latlab.server.dashboard.session import Viewer

__all__ = ["Markup", "error_page", "render"]

HERE = Path(__file__).parent
_ENV = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _ago(when: datetime | None) -> str:
    """``5 s ago``, ``3 min ago``, ``2 h ago``, ``4 d ago``."""
    if when is None:
        return "-"
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = max((datetime.now(UTC) - when).total_seconds(), 0.0)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return f"{int(seconds)} s ago"


def _bytes(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def _num(value: float | int | None) -> str:
    return "-" if value is None else format_number(float(value))


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


_ENV.filters.update(ago=_ago, num=_num, pct=_pct, size=_bytes)


def render(
    request: Request,
    template: str,
    viewer: Viewer | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    html = _ENV.get_template(template).render(request=request, viewer=viewer, **context)
    return HTMLResponse(html, status_code=status_code, headers=_HEADERS)


def error_page(request: Request, viewer: Viewer | None, status: int, message: str) -> HTMLResponse:
    return render(request, "error.html", viewer, status_code=status, status=status, message=message)


#: No other site may frame the pages; scripts and styles only from this server.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
