"""The server's metrics (``GET /metrics``), written by the official Prometheus client into a
registry of this app's own: counters and histograms kept in this process, gauges read at scrape
time (the job and device gauges from the database, so they are right whichever server process
answers the scrape).

Counters and histograms are per process: with several server replicas, Prometheus scrapes each
and ``sum(rate(...))`` adds them up.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy.orm import Session, sessionmaker

from latlab.schemas import JobState
from latlab.server.db import session_scope
from latlab.server.devices import service as devices_service
from latlab.server.jobs import repository as jobs_repository

__all__ = ["CONTENT_TYPE", "DatabaseGauges", "HttpMetrics", "Metrics"]

#: What ``prometheus_client.generate_latest`` writes (its own HTTP handlers serve it so too,
#: unless a scraper asks for another format).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
#: Seconds: an HTTP request, a claim's long poll, a predict batch, a measurement's timing.
DEFAULT_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
MEASUREMENT_BUCKETS_S = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)


class Metrics:
    """What this process counts, in ``registry`` (one per app, never the client's global one:
    tests start many apps in one process). ``generate_latest(registry)`` writes it all."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.http_requests = Counter(
            "latlab_http_requests",
            "HTTP requests answered, by route and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.http_seconds = Histogram(
            "latlab_http_request_seconds",
            "Time to answer an HTTP request, by route.",
            ["route"],
            registry=registry,
            buckets=DEFAULT_BUCKETS_S,
        )
        self.claims = Counter(
            "latlab_claims",
            "Agent claims, by outcome (job or empty).",
            ["outcome"],
            registry=registry,
        )
        self.results = Counter(
            "latlab_results",
            "Results stored (a repeated upload is not counted).",
            registry=registry,
        )
        self.measurement_seconds = Histogram(
            "latlab_measurement_seconds",
            "Wall time an agent spent timing one model (warm-up, runs, profiled pass).",
            ["runtime"],
            registry=registry,
            buckets=MEASUREMENT_BUCKETS_S,
        )
        self.predict_seconds = Histogram(
            "latlab_predict_seconds",
            "Time to answer a /v1/predict request, by predictor kind.",
            ["predictor"],
            registry=registry,
            buckets=DEFAULT_BUCKETS_S,
        )
        self.predict_archs = Counter("latlab_predict_archs", "Archs predicted.", registry=registry)
        #: read at scrape time: ``claims_waiting.set_function(lambda: notifier.waiting)``
        self.claims_waiting = Gauge(
            "latlab_claims_waiting",
            "Claims of this process long-polling for a job.",
            registry=registry,
        )


class DatabaseGauges:
    """A collector for ``Metrics.registry``: jobs by state, queue depth and devices online,
    read from the database at each scrape (one short transaction)."""

    def __init__(self, sessions: sessionmaker[Session], offline_after_s: float) -> None:
        self.sessions, self.offline_after_s = sessions, offline_after_s

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The names only (the registry checks them for clashes), without a query."""
        yield from self._families({}, 0)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with session_scope(self.sessions) as session:
            by_state = jobs_repository.state_counts(session)
            online = devices_service.count_online(session, self.offline_after_s)
        yield from self._families(by_state, online)

    @staticmethod
    def _families(by_state: dict[str, int], online: int) -> Iterator[GaugeMetricFamily]:
        jobs = GaugeMetricFamily("latlab_jobs", "Jobs by state.", labels=["state"])
        for state in JobState:
            jobs.add_metric([state.value], by_state.get(state.value, 0))
        yield jobs
        yield GaugeMetricFamily(
            "latlab_queue_depth",
            "Jobs waiting for a device.",
            value=by_state.get(JobState.queued.value, 0),
        )
        yield GaugeMetricFamily(
            "latlab_devices_online", "Agent devices seen recently.", value=online
        )


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
            self.metrics.http_requests.labels(
                method=scope["method"], route=route, status=str(status)
            ).inc()
            self.metrics.http_seconds.labels(route=route).observe(time.perf_counter() - started)
