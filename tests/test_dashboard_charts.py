"""The dashboard's charts: inline SVG strings that parse as XML, escape every label and never
fail on odd numbers (none, one, all equal, NaN, infinities, huge or tiny magnitudes)."""

from __future__ import annotations

import itertools
import math
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from latlab.server.dashboard.charts import (
    bars,
    format_number,
    histogram,
    run_order,
    scatter,
    series,
    ticks,
)

NS = "{http://www.w3.org/2000/svg}"
COORDS = ("x", "y", "x1", "x2", "y1", "y2", "cx", "cy", "r", "width", "height")
EVIL = "<script>alert('x')</script> & \"quoted\" 'op'"


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{NS}svg"
    assert root.get("role") == "img"
    assert root.get("width") == "100%"
    assert root.get("viewBox", "").startswith("0 0 ")
    assert root.find(f"{NS}title") is not None
    return root


def of_class(root: ET.Element, name: str) -> list[ET.Element]:
    return [e for e in root.iter() if name in (e.get("class") or "").split()]


def coordinates(root: ET.Element) -> list[float]:
    """Every number that places something: positions, sizes and polyline points."""
    out = [float(e.get(a, "")) for e in root.iter() for a in COORDS if e is not root and e.get(a)]
    for line in root.iter(f"{NS}polyline"):
        out += [float(c) for xy in line.get("points", "").split() for c in xy.split(",")]
    return out


def tip(element: ET.Element) -> str:
    title = element.find(f"{NS}title")
    assert title is not None
    return title.text or ""


def every_chart(values: list[float], title: str = "t") -> dict[str, str]:
    pairs = list(zip(values, reversed(values), strict=True))
    return {
        "histogram": histogram(values, title=title),
        "run-order": run_order(values, title=title),
        "bars": bars([(f"op{i}", v) for i, v in enumerate(values)], title=title),
        "scatter": scatter(pairs, title=title, x_label="x", y_label="y", diagonal=True),
        "log-scatter": scatter(pairs, title=title, x_label="x", y_label="y", log=True),
        "series": series(pairs, title=title, x_label="s", y_label="ms"),
    }


# --------------------------------------------------------------------------- the charts


def test_a_histogram_has_one_titled_bar_per_bin_and_counts_every_value() -> None:
    root = parse(histogram([1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 10.0], title="Latency", bins=5))
    assert root.get("aria-label") == "Latency"
    assert root.get("class") == "chart chart-histogram"
    rects = of_class(root, "bar")
    assert len(rects) == 5
    assert tip(rects[0]) == "1\u20132.8 ms: 3"
    assert sum(int(tip(r).rsplit(": ", 1)[1]) for r in rects) == 7
    assert any((t.text or "").endswith(" ms") for t in of_class(root, "label"))


def test_run_order_draws_the_samples_in_order_with_a_dashed_median() -> None:
    root = parse(run_order([5.0, 1.0, 3.0], title="Runs", unit="us"))
    assert root.get("class") == "chart chart-run-order"
    assert len(of_class(root, "point")) == 3
    assert len(of_class(root, "line")) == 1
    (median,) = of_class(root, "median")
    assert tip(median) == "median 3 us"
    xs = [float(p.get("cx", "")) for p in of_class(root, "point")]
    assert xs == sorted(xs)


def test_run_order_leaves_out_the_points_of_a_long_run_but_keeps_the_line() -> None:
    root = parse(run_order([float(i % 7) for i in range(1000)], title="Long"))
    assert of_class(root, "point") == []
    assert len(of_class(root, "line")) == 1


def test_bars_keep_the_given_order_and_grow_with_the_items() -> None:
    items = [("conv", 2.5), ("matmul", 10.0), ("add", 0.125)]
    root = parse(bars(items, title="Ops"))
    rects = of_class(root, "bar")
    assert [tip(r) for r in rects] == ["conv: 2.5 ms", "matmul: 10 ms", "add: 0.125 ms"]
    assert float(rects[1].get("width", "")) > float(rects[0].get("width", ""))
    assert [t.text for t in of_class(root, "value")] == ["2.5 ms", "10 ms", "0.125 ms"]
    taller = parse(bars(items * 4, title="Ops"))
    assert float(taller.get("viewBox", "").split()[3]) > float(root.get("viewBox", "").split()[3])


def test_a_scatter_titles_each_point_with_its_label_or_its_coordinates() -> None:
    points = [(1.0, 1.2), (2.0, 1.8), (3.0, 3.3)]
    root = parse(scatter(points, title="Pred", x_label="measured", y_label="predicted"))
    assert [tip(p) for p in of_class(root, "point")] == ["1, 1.2", "2, 1.8", "3, 3.3"]
    assert of_class(root, "diag") == []
    labelled = parse(
        scatter(
            points, title="Pred", x_label="m", y_label="p", diagonal=True, labels=["a", "b", "c"]
        )
    )
    assert [tip(p) for p in of_class(labelled, "point")] == ["a", "b", "c"]
    assert len(of_class(labelled, "diag")) == 1
    texts = {t.text for t in of_class(root, "axis-label")}
    assert texts == {"measured", "predicted"}


def test_a_log_scatter_drops_the_points_it_cannot_place() -> None:
    points = [(0.001, 0.002), (10.0, 12.0), (1e4, 9e3), (0.0, 1.0), (-1.0, 5.0), (3.0, -2.0)]
    root = parse(scatter(points, title="Log", x_label="x", y_label="y", log=True))
    assert [tip(p) for p in of_class(root, "point")] == ["0.001, 0.002", "10, 12", "10,000, 9,000"]


def test_a_series_draws_its_points_in_the_order_of_x() -> None:
    root = parse(
        series([(30.0, 2.0), (0.0, 1.0), (60.0, 1.5)], title="Canary", x_label="s", y_label="ms")
    )
    assert root.get("class") == "chart chart-series"
    assert [tip(p) for p in of_class(root, "point")] == ["0, 1", "30, 2", "60, 1.5"]


# --------------------------------------------------------------------------- escaping


def test_labels_and_titles_from_user_data_are_text_never_markup() -> None:
    charts = [
        histogram([1.0, 2.0], title=EVIL, unit=EVIL),
        run_order([1.0, 2.0], title=EVIL, unit=EVIL),
        bars([(EVIL, 1.0)], title=EVIL, unit=EVIL, width=4000),
        scatter([(1.0, 2.0)], title=EVIL, x_label=EVIL, y_label=EVIL, labels=[EVIL]),
        series([(1.0, 2.0)], title=EVIL, x_label=EVIL, y_label=EVIL),
    ]
    for svg in charts:
        root = parse(svg)
        assert all(not e.tag.endswith("script") for e in root.iter())
        assert root.get("aria-label") == EVIL
        assert tip(root) == EVIL
        assert any(EVIL in "".join(e.itertext()) for e in root if e.tag != f"{NS}title")


# --------------------------------------------------------------------------- odd inputs


@pytest.mark.parametrize("values", [[], [math.nan], [math.inf, -math.inf]])
def test_no_usable_value_draws_no_data(values: list[float]) -> None:
    for kind, svg in every_chart(values).items():
        root = parse(svg)
        (empty,) = of_class(root, "empty")
        assert empty.text == "no data", kind


@pytest.mark.parametrize("values", [[4.2], [7.0] * 9, [0.0, 0.0], [1e-300] * 3, [-1e300, 1e300]])
def test_one_value_or_equal_values_or_extreme_ones_still_draw(values: list[float]) -> None:
    for kind, svg in every_chart(values).items():
        root = parse(svg)
        assert all(math.isfinite(c) for c in coordinates(root)), kind
        if kind != "log-scatter" or values[0] > 0:
            assert of_class(root, "empty") == [], kind


def test_nan_and_infinite_values_are_dropped_and_run_numbers_kept() -> None:
    values = [1.0, math.nan, 2.0, math.inf, 3.0]
    assert len(of_class(parse(histogram(values, title="h", bins=3)), "bar")) == 3
    points = of_class(parse(run_order(values, title="r")), "point")
    assert [tip(p) for p in points] == ["1, 1", "3, 2", "5, 3"]
    assert len(of_class(parse(bars([("a", math.nan), ("b", 1.0)], title="b")), "bar")) == 1


def test_a_histogram_of_one_value_puts_it_in_a_bar() -> None:
    rects = of_class(parse(histogram([5.0], title="one", bins=4)), "bar")
    assert sum(int(tip(r).rsplit(": ", 1)[1]) for r in rects) == 1


any_floats = st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=40)


@settings(max_examples=60, deadline=None)
@given(values=any_floats, title=st.text(max_size=20) | st.sampled_from([EVIL, "\x00\x1b\ufffe"]))
def test_every_chart_is_well_formed_svg_for_any_floats(values: list[float], title: str) -> None:
    for kind, svg in every_chart(values, title).items():
        root = parse(svg)
        assert all(math.isfinite(c) for c in coordinates(root)), kind
        if title.isprintable():  # XML drops control characters and turns tabs into spaces
            assert root.get("aria-label") == title, kind


# --------------------------------------------------------------------------- helpers


def is_nice(step: float) -> bool:
    mantissa = step / 10 ** math.floor(math.log10(step))
    return any(math.isclose(mantissa, m, rel_tol=1e-6) for m in (1, 2, 5, 10))


@settings(max_examples=200, deadline=None)
@given(
    lo=st.floats(min_value=-1e12, max_value=1e12),
    hi=st.floats(min_value=-1e12, max_value=1e12),
    n=st.integers(min_value=1, max_value=10),
)
def test_ticks_step_by_one_two_or_five_and_cover_the_range(lo: float, hi: float, n: int) -> None:
    ts = ticks(lo, hi, n)
    assert len(ts) >= 2
    assert all(a < b for a, b in itertools.pairwise(ts))
    step = ts[1] - ts[0]
    assert is_nice(step)
    assert all(math.isclose(b - a, step, rel_tol=1e-6) for a, b in itertools.pairwise(ts))
    low, high = min(lo, hi), max(lo, hi)
    assert ts[0] <= low and ts[-1] >= high
    if high - low > max(abs(low), abs(high), 1e-250 * 1e12) * 1e-12:  # else: degenerate
        assert low - ts[0] < step * (1 + 1e-9) and ts[-1] - high < step * (1 + 1e-9)


def test_ticks_of_a_range_are_round_numbers() -> None:
    assert ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert ticks(0.3, 0.7) == [0.3, 0.4, 0.5, 0.6, 0.7]
    assert ticks(3.0, 17.0) == [0.0, 5.0, 10.0, 15.0, 20.0]
    assert ticks(17.0, 3.0) == ticks(3.0, 17.0)


def test_ticks_of_a_single_value_widen_around_it() -> None:
    assert ticks(1.0, 1.0) == [0.9, 0.95, 1.0, 1.05, 1.1]
    assert ticks(0.0, 0.0) == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert ticks(math.nan, 1.0) == [] and ticks(0.0, math.inf) == []


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.000123, "0.000123"),
        (1234.5, "1,235"),
        (12.345, "12.3"),
        (1.0, "1"),
        (0.5, "0.5"),
        (999.5, "1,000"),
        (123456.7, "123,457"),
        (-1234.5, "-1,235"),
        (0.0, "0"),
        (-0.0, "0"),
        (1.5e7, "1.5e7"),
        (1e-5, "1e-5"),
        (1e300, "1e300"),
        (math.nan, "NaN"),
        (math.inf, "∞"),
        (-math.inf, "-∞"),
    ],
)
def test_format_number_keeps_about_three_significant_digits(value: float, text: str) -> None:
    assert format_number(value) == text
