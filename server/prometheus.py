"""The server's metrics in Prometheus' text exposition format (``GET /metrics``), without a
client library: counters and histograms kept in this process, gauges read from the database
at scrape time (so they are right whichever server process answers the scrape).

Counters and histograms are per process: with several server replicas, Prometheus scrapes each
and ``sum(rate(...))`` adds them up.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CONTENT_TYPE", "Counter", "Histogram", "HttpMetrics", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Seconds: an HTTP request, a claim's long poll, a predict batch, a measurement's timing.
DEFAULT_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
MEASUREMENT_BUCKETS_S = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)

Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels, extra: Labels = ()) -> str:
    pairs = labels + extra
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


@dataclass
class Counter:
    name: str
    help: str
    _values: dict[Labels, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(tuple(sorted(labels.items())), 0.0)

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        with self._lock:
            items = sorted(self._values.items())
        for labels, value in items:
            yield f"{self.name}{_labels(labels)} {_number(value)}"


@dataclass
class Histogram:
    name: str
    help: str
    buckets: tuple[float, ...] = DEFAULT_BUCKETS_S
    #: labels -> (count per bucket, sum, count)
    _series: dict[Labels, tuple[list[int], float, int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def observe(self, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        index = bisect.bisect_left(self.buckets, value)
        with self._lock:
            counts, total, n = self._series.get(key, ([0] * len(self.buckets), 0.0, 0))
            if index < len(counts):
                counts[index] += 1
            self._series[key] = (counts, total + value, n + 1)

    def count(self, **labels: str) -> int:
        series = self._series.get(tuple(sorted(labels.items())))
        return series[2] if series else 0

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        with self._lock:
            items = sorted((k, (list(c), s, n)) for k, (c, s, n) in self._series.items())
        for labels, (counts, total, n) in items:
            cumulative = 0
            for bound, c in zip(self.buckets, counts, strict=True):
                cumulative += c
                le = (("le", _number(bound)),)
                yield f"{self.name}_bucket{_labels(labels, le)} {cumulative}"
            yield f"{self.name}_bucket{_labels(labels, (('le', '+Inf'),))} {n}"
            yield f"{self.name}_sum{_labels(labels)} {_number(total)}"
            yield f"{self.name}_count{_labels(labels)} {n}"


def _gauge(name: str, help_: str, values: Iterable[tuple[Labels, float]]) -> Iterable[str]:
    yield f"# HELP {name} {help_}"
    yield f"# TYPE {name} gauge"
    for labels, value in values:
        yield f"{name}{_labels(labels)} {_number(value)}"


class Metrics:
    """What this process counts; ``render(db_gauges)`` adds the database's gauges."""

    def __init__(self) -> None:
        self.http_requests = Counter(
            "latlab_http_requests_total", "HTTP requests answered, by route and status."
        )
        self.http_seconds = Histogram(
            "latlab_http_request_seconds", "Time to answer an HTTP request, by route."
        )
        self.claims = Counter("latlab_claims_total", "Agent claims, by outcome (job or empty).")
        self.results = Counter(
            "latlab_results_total", "Results stored (a repeated upload is not counted)."
        )
        self.measurement_seconds = Histogram(
            "latlab_measurement_seconds",
            "Wall time an agent spent timing one model (warm-up, runs, profiled pass).",
            MEASUREMENT_BUCKETS_S,
        )
        self.predict_seconds = Histogram(
            "latlab_predict_seconds", "Time to answer a /v1/predict request, by predictor kind."
        )
        self.predict_archs = Counter("latlab_predict_archs_total", "Archs predicted.")

    def render(self, gauges: dict[str, tuple[str, list[tuple[Labels, float]]]]) -> str:
        lines: list[str] = []
        for name, (help_, values) in sorted(gauges.items()):
            lines += _gauge(name, help_, values)
        for metric in vars(self).values():  # every counter and histogram above, in order
            lines += metric.render()
        return "\n".join(lines) + "\n"


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def _route_template(scope: Scope) -> str:
    """The matched route's full path template. FastAPI resolves included routers lazily and
    leaves the inner route (its path without the prefix) in ``scope["route"]``; the full
    template is on its effective route context."""
    context = (scope.get("fastapi") or {}).get("effective_route_context")
    for candidate in (context, scope.get("route")):
        template = getattr(candidate, "path_format", None) or getattr(candidate, "path", None)
        if isinstance(template, str):
            return template
    return "unmatched"


class HttpMetrics:
    """ASGI middleware: counts every HTTP answer by its route template (``/v1/jobs/{job_id}``,
    never the id) and status, and times it."""

    def __init__(self, app: App, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = _route_template(scope)
            self.metrics.http_requests.inc(method=scope["method"], route=route, status=str(status))
            self.metrics.http_seconds.observe(time.perf_counter() - started, route=route)
