"""Charts for the dashboard, rendered on the server as inline SVG strings.

No JavaScript chart library: there is nothing to ship, pin or license, the pages work offline and
with scripts turned off, and the browser draws the vectors crisply at any size (each chart has a
fixed logical size in its ``viewBox`` and ``width="100%"``, so it scales with its container).

Every function returns one ``<svg>`` element with ``role="img"``, an ``aria-label`` and a
``<title>`` from the chart's title. Elements carry CSS classes (``bar``, ``point``, ``line``,
``median``, ``diag``, ``axis``, ``grid``, ``label``, ``empty``) for the page's stylesheet to
colour; the small embedded default style has zero specificity (``:where``), so any page rule
wins. All text goes through ``html.escape``: labels are user data (device names, op types).
NaN, infinities and magnitudes beyond 1e300 are dropped; an empty input draws "no data". No
function raises for any list of floats.
"""

from __future__ import annotations

import html
import math
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["bars", "format_number", "histogram", "run_order", "scatter", "series", "ticks"]

_LIMIT = 1e300  # larger magnitudes count as infinite: differences between values stay finite
_MAX_POINTS = 400  # run_order and series draw a circle per point up to this many
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 16, 12, 40  # plot margins (axis labels live in them)
_MIDDLE = ' dominant-baseline="middle"'
_STYLE = (
    "<style>"
    ":where(.chart) :where(.bar,.point){fill:#4c78a8}"
    ":where(.chart) :where(.line){fill:none;stroke:#4c78a8;stroke-width:1.5}"
    ":where(.chart) :where(.median,.diag){stroke:#e45756;stroke-dasharray:4 3}"
    ":where(.chart) :where(.axis){stroke:currentColor;stroke-opacity:.6}"
    ":where(.chart) :where(.grid){stroke:currentColor;stroke-opacity:.12}"
    ":where(.chart) :where(text){fill:currentColor;font:11px sans-serif}"
    "</style>"
)


_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _esc(text: object) -> str:
    """Text for an element or an attribute: escaped, less the characters XML 1.0 forbids."""
    return html.escape(_NOT_XML.sub("", str(text)), quote=True)


def _num(value: float) -> float | None:
    """``value`` as a float, or None when it is not a finite number within ±1e300."""
    try:
        f = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return f if math.isfinite(f) and abs(f) <= _LIMIT else None


def format_number(value: float) -> str:
    """About three significant digits: 0.000123 → "0.000123", 12.345 → "12.3", 1234.5 → "1,235".

    Thousands separators from 1,000 to 999,999; scientific notation ("1.23e6", "1e-5") beyond.
    """
    v = float(value)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "∞" if v > 0 else "-∞"
    if v == 0:
        return "0"
    r = float(f"{v:.3g}")
    if 1000 <= abs(r) < 1e6:
        return f"{'-' if v < 0 else ''}{math.floor(abs(v) + 0.5):,}"  # half up, not half even
    return f"{r:.3g}".replace("e+0", "e").replace("e+", "e").replace("e-0", "e-")


def _extent(lo: float, hi: float) -> tuple[float, float]:
    """(lo, hi) ordered; a degenerate range (one value, or a span lost in rounding) widened."""
    lo, hi = min(lo, hi), max(lo, hi)
    if hi - lo > max(abs(lo), abs(hi)) * 1e-12 and hi - lo > 1e-250:
        return lo, hi
    mid = lo / 2 + hi / 2
    pad = abs(mid) / 10 if abs(mid) > 1e-250 else 1.0
    return mid - pad, mid + pad


def ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` nice values, steps of 1, 2 or 5 times 10^k, from at or below lo to at or above hi.

    The bounds may come in either order; a degenerate range widens around its middle. Bounds
    that are not finite or beyond ±1e300 give an empty list.
    """
    if _num(lo) is None or _num(hi) is None:
        return []
    lo, hi = _extent(lo, hi)
    raw = (hi - lo) / max(1, n)
    k = math.floor(math.log10(raw))
    m = next(m for m in (1, 2, 5, 10) if m * 10.0**k >= raw)
    if m == 10:
        m, k = 1, k + 1

    def at(i: int) -> float:  # exact decimal arithmetic, then one rounding: 0.3, not 0.30...04
        return float(i * m * 10**k) if k >= 0 else i * m / 10**-k

    step = m * 10.0**k
    first, last = math.floor(lo / step), math.ceil(hi / step)
    first += (at(first + 1) <= lo) - (at(first) > lo)  # lo / step is off by one at most
    last += (at(last) < hi) - (at(last - 1) >= hi)
    return [at(i) + 0.0 for i in range(first, max(last, first + 1) + 1)]


def _tick_labels(ts: Sequence[float], unit: str = "") -> list[str]:
    """Labels with the decimals the step needs (format_number's 3 digits could repeat one)."""
    step = ts[1] - ts[0] if len(ts) > 1 else 1.0
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    if decimals <= 6 and max(abs(t) for t in ts) < 1e6:
        return [f"{t:,.{decimals}f}{unit}" for t in ts]
    return [f"{format_number(t)}{unit}" for t in ts]


def _u(unit: str) -> str:
    return f" {unit}" if unit else ""


@dataclass(frozen=True)
class _Scale:
    """Maps data values from [lo, hi] to pixels from a to b (b < a for a y axis)."""

    lo: float
    hi: float
    a: float
    b: float

    def __call__(self, v: float) -> float:
        return self.a + (v - self.lo) / (self.hi - self.lo) * (self.b - self.a)


def _svg(kind: str, title: str, width: int, height: int, body: Iterable[str]) -> str:
    t = _esc(title)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-{kind}" role="img" '
        f'aria-label="{t}" viewBox="0 0 {width} {height}" width="100%" '
        f'preserveAspectRatio="xMidYMid meet"><title>{t}</title>{_STYLE}{"".join(body)}</svg>'
    )


def _tip(tip: str) -> str:
    return f"<title>{_esc(tip)}</title>"


def _line(cls: str, x1: float, y1: float, x2: float, y2: float, tip: str = "") -> str:
    end = f">{_tip(tip)}</line>" if tip else "/>"
    return f'<line class="{cls}" x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}"{end}'


def _text(cls: str, x: float, y: float, text: str, anchor: str = "start", more: str = "") -> str:
    xy = f'x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"'
    return f'<text class="{cls}" {xy}{more}>{_esc(text)}</text>'


def _point(x: float, y: float, tip: str, r: float = 3) -> str:
    return f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="{r}">{_tip(tip)}</circle>'


def _bar(x: float, y: float, width: float, height: float, tip: str) -> str:
    box = f'x="{x:.2f}" y="{y:.1f}" width="{max(width, 0):.2f}" height="{max(height, 0):.1f}"'
    return f'<rect class="bar" {box}>{_tip(tip)}</rect>'


def _empty(kind: str, title: str, width: int, height: int) -> str:
    text = _text("empty", width / 2, height / 2, "no data", "middle", _MIDDLE)
    return _svg(kind, title, width, height, [text])


def _labelled(ts: Sequence[float], unit: str = "") -> list[tuple[float, str]]:
    return list(zip(ts, _tick_labels(ts, unit), strict=True))


def _axes(
    xs: _Scale,
    ys: _Scale,
    xt: Sequence[tuple[float, str]],
    yt: Sequence[tuple[float, str]],
    x_label: str = "",
    y_label: str = "",
) -> list[str]:
    """Grid lines and labels at the y ticks, tick marks and labels at the x ticks, both axes."""
    out: list[str] = []
    for t, s in yt:
        out += [
            _line("grid", xs.a, ys(t), xs.b, ys(t)),
            _text("label", xs.a - 6, ys(t), s, "end", _MIDDLE),
        ]
    for t, s in xt:
        out += [
            _line("axis", xs(t), ys.a, xs(t), ys.a + 4),
            _text("label", xs(t), ys.a + 16, s, "middle"),
        ]
    out += [_line("axis", xs.a, ys.a, xs.b, ys.a), _line("axis", xs.a, ys.a, xs.a, ys.b)]
    if x_label:
        out.append(_text("label axis-label", (xs.a + xs.b) / 2, ys.a + 32, x_label, "middle"))
    if y_label:
        turn = f' transform="rotate(-90 12 {(ys.a + ys.b) / 2:.1f})"'
        out.append(_text("label axis-label", 12, (ys.a + ys.b) / 2, y_label, "middle", turn))
    return out


def _scales(
    xt: Sequence[float], yt: Sequence[float], width: int, height: int
) -> tuple[_Scale, _Scale]:
    return _Scale(xt[0], xt[-1], _LEFT, width - _RIGHT), _Scale(
        yt[0], yt[-1], height - _BOTTOM, _TOP
    )


def histogram(
    values: Sequence[float],
    *,
    title: str,
    unit: str = "ms",
    bins: int = 30,
    width: int = 640,
    height: int = 240,
) -> str:
    """Counts of the values in ``bins`` equal bins; each bar titled "lo-hi unit: count" (an en dash)."""
    v = [f for x in values if (f := _num(x)) is not None]
    if not v:
        return _empty("histogram", title, width, height)
    lo, hi = _extent(min(v), max(v))
    edges = np.linspace(lo, hi, max(1, int(bins)) + 1)
    counts = np.histogram(np.asarray(v), bins=edges)[0]
    xt, yt = ticks(lo, hi), ticks(0, float(counts.max()))
    xs, ys = _scales(xt, yt, width, height)
    body = _axes(xs, ys, _labelled(xt, _u(unit)), [(t, f"{t:,.0f}") for t in yt if t.is_integer()])
    for e0, e1, c in zip(edges[:-1], edges[1:], counts, strict=True):
        x0, x1, y = xs(float(e0)), xs(float(e1)), ys(float(c))
        gap = min(1.0, (x1 - x0) / 10)
        tip = f"{format_number(e0)}\u2013{format_number(e1)}{_u(unit)}: {c}"
        body.append(_bar(x0 + gap / 2, y, x1 - x0 - gap, ys.a - y, tip))
    return _svg("histogram", title, width, height, body)


def _line_chart(
    kind: str,
    title: str,
    pts: list[tuple[float, float]],
    labels: tuple[str, str],
    size: tuple[int, int],
    median_unit: str | None = None,
) -> str:
    """A polyline through the points (a circle on each, up to 400), an optional median line."""
    if not pts:
        return _empty(kind, title, *size)
    xt = ticks(min(p[0] for p in pts), max(p[0] for p in pts))
    yt = ticks(min(p[1] for p in pts), max(p[1] for p in pts))
    xs, ys = _scales(xt, yt, *size)
    xl = [t for t in _labelled(xt) if median_unit is None or t[0].is_integer()]  # runs: whole
    body = _axes(xs, ys, xl, _labelled(yt), *labels)
    coords = [(xs(x), ys(y)) for x, y in pts]
    body.append(
        f'<polyline class="line" points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in coords)}"/>'
    )
    if median_unit is not None:
        med = statistics.median(p[1] for p in pts)
        body.append(
            _line(
                "median",
                xs.a,
                ys(med),
                xs.b,
                ys(med),
                f"median {format_number(med)}{_u(median_unit)}",
            )
        )
    if len(pts) <= _MAX_POINTS:
        body += [
            _point(cx, cy, f"{format_number(x)}, {format_number(y)}", 2.5)
            for (x, y), (cx, cy) in zip(pts, coords, strict=True)
        ]
    return _svg(kind, title, *size, body)


def run_order(
    values: Sequence[float], *, title: str, unit: str = "ms", width: int = 640, height: int = 240
) -> str:
    """The samples in the order they were taken (x: run number from 1) and a dashed median:
    drift shows as a slope, warm-up as a first few outliers."""
    pts = [(float(i + 1), f) for i, x in enumerate(values) if (f := _num(x)) is not None]
    return _line_chart("run-order", title, pts, ("run", unit), (width, height), median_unit=unit)


def series(
    points: Sequence[tuple[float, float]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    width: int = 640,
    height: int = 200,
) -> str:
    """A line through (x, y) points in the order of x (e.g. seconds since the first one)."""
    pts = sorted(
        (fx, fy) for x, y in points if (fx := _num(x)) is not None and (fy := _num(y)) is not None
    )
    return _line_chart("series", title, pts, (x_label, y_label), (width, height))


def _log_ticks(lo: float, hi: float) -> tuple[list[float], list[tuple[float, str]]]:
    """Ticks over log10 values: whole decades where the range spans some, labelled as 10^t."""
    lo, hi = _extent(lo, hi)
    if math.ceil(hi) - math.floor(lo) < 2:
        ts = ticks(lo, hi)
        return ts, [(t, format_number(10.0**t)) for t in ts]
    ts = ticks(math.floor(lo), math.ceil(hi))
    decades = [t for t in ts if t.is_integer()]
    return ts, [(t, f"1e{t:.0f}" if abs(t) > 5 else format_number(10.0**t)) for t in decades]


def scatter(
    points: Sequence[tuple[float, float]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    diagonal: bool = False,
    log: bool = False,
    labels: Sequence[str] | None = None,
    width: int = 640,
    height: int = 320,
) -> str:
    """One circle per (x, y) point, titled with its label (or "x, y"); ``diagonal`` draws y = x
    (both axes then share one range); ``log`` uses log10 axes and drops non-positive values."""
    pts: list[tuple[float, float, str]] = []
    for i, (x, y) in enumerate(points):
        fx, fy = _num(x), _num(y)
        if fx is None or fy is None or (log and (fx <= 0 or fy <= 0)):
            continue
        tip = labels[i] if labels is not None and i < len(labels) else None
        tip = f"{format_number(fx)}, {format_number(fy)}" if tip is None else tip
        pts.append((math.log10(fx), math.log10(fy), tip) if log else (fx, fy, tip))
    if not pts:
        return _empty("scatter", title, width, height)
    xlo, xhi = min(p[0] for p in pts), max(p[0] for p in pts)
    ylo, yhi = min(p[1] for p in pts), max(p[1] for p in pts)
    if diagonal:
        xlo, xhi = ylo, yhi = min(xlo, ylo), max(xhi, yhi)
    if log:
        (xt, xl), (yt, yl) = _log_ticks(xlo, xhi), _log_ticks(ylo, yhi)
    else:
        xt, yt = ticks(xlo, xhi), ticks(ylo, yhi)
        xl, yl = _labelled(xt), _labelled(yt)
    xs, ys = _scales(xt, yt, width, height)
    body = _axes(xs, ys, xl, yl, x_label, y_label)
    if diagonal:
        lo, hi = max(xt[0], yt[0]), min(xt[-1], yt[-1])
        body.append(_line("diag", xs(lo), ys(lo), xs(hi), ys(hi)))
    body += [_point(xs(x), ys(y), tip) for x, y, tip in pts]
    return _svg("scatter", title, width, height, body)


def bars(
    items: Sequence[tuple[str, float]],
    *,
    title: str,
    unit: str = "ms",
    width: int = 640,
    bar_height: int = 18,
) -> str:
    """Horizontal bars in the given order: label on the left, value right of the bar; the
    chart grows with the items. Long labels are cut short (the bar's title has them whole)."""
    rows = [(str(label), f) for label, value in items if (f := _num(value)) is not None]
    if not rows:
        return _empty("bars", title, width, 60)
    bh = max(1, int(bar_height))
    gap = max(2, bh // 4)
    height = 2 * _TOP + len(rows) * (bh + gap)
    label_w = width * 0.3
    lo, hi = _extent(min(0.0, *(f for _, f in rows)), max(0.0, *(f for _, f in rows)))
    xs = _Scale(lo, hi, label_w, width - 80)
    chars = max(2, int(label_w / 6.5) - 1)
    body: list[str] = []
    for i, (label, value) in enumerate(rows):
        y = _TOP + i * (bh + gap)
        x0, x1 = sorted((xs(0.0), xs(value)))
        shown = label if len(label) <= chars else label[: chars - 1] + "\u2026"
        text = f"{format_number(value)}{_u(unit)}"
        body += [
            _text("label", 4, y + bh / 2, shown, more=_MIDDLE),
            _bar(x0, y, x1 - x0, bh, f"{label}: {text}"),
            _text("label value", x1 + 4, y + bh / 2, text, more=_MIDDLE),
        ]
    body.append(_line("axis", xs(0.0), _TOP / 2, xs(0.0), height - _TOP / 2))
    return _svg("bars", title, width, height, body)
