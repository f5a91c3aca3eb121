"""The FastAPI application factory: ``create_app(settings)``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Response
from prometheus_client import generate_latest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import sessionmaker
from starlette.concurrency import run_in_threadpool

import latlab
from latlab.schemas import ErrorBody, ModelFormat
from latlab.server.background import BackgroundWork
from latlab.server.blobstore import open_blob_store
from latlab.server.canary.service import CanaryModels, CanaryPolicy
from latlab.server.config import Settings
from latlab.server.dashboard import install_dashboard
from latlab.server.datasets import builder as datasets_builder
from latlab.server.datasets import canary_check
from latlab.server.datasets.endpoints import router as datasets_router
from latlab.server.db import (
    create_db_engine,
    current_revision,
    head_revision,
    session_scope,
    upgrade_to_head,
)
from latlab.server.deps import AppState, StateDep
from latlab.server.devices.endpoints import router as devices_router
from latlab.server.errors import Unavailable, install_error_handlers
from latlab.server.jobs import service as jobs_service
from latlab.server.jobs.endpoints import agent_router as jobs_agent_router
from latlab.server.jobs.endpoints import router as jobs_router
from latlab.server.luts import builder as luts_builder
from latlab.server.luts.endpoints import router as luts_router
from latlab.server.measurements.endpoints import agent_router as measurements_agent_router
from latlab.server.measurements.endpoints import router as measurements_router
from latlab.server.models.endpoints import router as models_router
from latlab.server.notify import JobNotifier, PgJobRelay
from latlab.server.predict.cache import PredictorCache
from latlab.server.predict.endpoints import router as predict_router
from latlab.server.prometheus import CONTENT_TYPE, DatabaseGauges, HttpMetrics, Metrics
from latlab.server.registry.endpoints import router as registry_router
from latlab.server.routing import api_router
from latlab.server.transfer.endpoints import router as transfer_router
from latlab.server.uploads import BodyLimit

__all__ = ["create_app"]

#: Every error answer has the same body; documented once for all of /v1.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in [
        (400, "Bad request"),
        (401, "Missing or unknown bearer token"),
        (403, "A token of the wrong kind"),
        (404, "Not found"),
        (409, "Conflict (stale lease, finished job)"),
        (413, "Upload too large"),
        (422, "Invalid input"),
    ]
}

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> FastAPI:
    """Build the app; migrations run to head here, before the first request."""
    engine = create_db_engine(settings.resolved_database_url)
    upgrade_to_head(engine)
    blobs = open_blob_store(settings)
    state = AppState(
        settings=settings,
        sessions=sessionmaker(engine, expire_on_commit=False),
        blobs=blobs,
        canaries=CanaryModels(blobs, settings),
        notifier=JobNotifier(),
        background=BackgroundWork(
            [datasets_builder.prepare_next, canary_check.check_next, luts_builder.advance_next]
        ),
        predictors=PredictorCache(),
        metrics=Metrics(),
    )
    state.metrics.registry.register(DatabaseGauges(state.sessions, settings.offline_after_s))
    state.metrics.claims_waiting.set_function(lambda: state.notifier.waiting)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state.notifier.bind(asyncio.get_running_loop())
        # replicas on one PostgreSQL database wake each other's claims (LISTEN/NOTIFY)
        relay = (
            PgJobRelay.for_engine(engine, state.notifier)
            if engine.dialect.name == "postgresql"
            else None
        )
        if relay is not None:
            await run_in_threadpool(relay.start)
        if CanaryPolicy.of(settings).enabled:
            await run_in_threadpool(_prepare_canary, state)
        stopping = asyncio.Event()
        tasks = [
            asyncio.create_task(_reap_until(stopping, state)),
            asyncio.create_task(state.background.run(stopping, state)),
        ]
        try:
            yield
        finally:
            stopping.set()
            state.background.wake()
            await asyncio.gather(*tasks)  # work in flight finishes: no connection left checked out
            if relay is not None:
                await run_in_threadpool(relay.stop)
            engine.dispose()

    app = FastAPI(
        title="latlab",
        version=latlab.__version__,
        summary="On-device latency measurement service",
        lifespan=lifespan,
        docs_url=None,  # served from the package's own assets (dashboard.docs), no CDN
        redoc_url=None,
    )
    app.state.latlab = state
    install_error_handlers(app)
    v1 = api_router(prefix="/v1", responses=ERROR_RESPONSES)
    for router in (
        devices_router,
        models_router,
        jobs_router,
        jobs_agent_router,
        measurements_router,
        measurements_agent_router,
        datasets_router,
        luts_router,
        transfer_router,
        registry_router,
        predict_router,
    ):
        v1.include_router(router)
    app.include_router(v1)
    install_dashboard(app)
    app.add_api_route(
        "/healthz",
        _healthz,
        methods=["GET"],
        tags=["health"],
        responses={503: {"model": ErrorBody, "description": "Database down or not at head"}},
    )
    app.add_api_route(
        "/metrics",
        _metrics,
        methods=["GET"],
        tags=["health"],
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text"}},
    )
    app.add_middleware(
        BodyLimit,
        json_bytes=settings.max_json_bytes,
        upload_bytes=max(settings.max_model_bytes, settings.max_import_bytes),
    )
    app.add_middleware(HttpMetrics, metrics=state.metrics)
    return app


async def _healthz(state: StateDep) -> dict[str, str]:
    """Open: 200 when the database answers with its schema at the migrations' head and the blob
    store can be used, else 503 with the reason (what a load balancer or compose healthcheck
    asks)."""

    def check() -> dict[str, str]:
        try:
            with session_scope(state.sessions) as session:
                session.execute(text("SELECT 1"))
                engine = session.get_bind()
            revision = current_revision(engine)  # type: ignore[arg-type]
        except SQLAlchemyError as exc:
            raise Unavailable(f"the database does not answer: {type(exc).__name__}") from exc
        head = head_revision() or ""
        if revision != head:
            raise Unavailable(f"the database schema is at {revision!r}, not at head {head!r}")
        state.blobs.check()
        return {"status": "ok", "db_revision": revision or "", "head": head}

    return await run_in_threadpool(check)


async def _metrics(state: StateDep) -> Response:
    """Open: Prometheus text format — jobs by state and queue depth, devices online (from the
    database), and this process's claims, results, measurement and predict timings, HTTP
    requests."""
    body = await run_in_threadpool(generate_latest, state.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE)


async def _reap_until(stopping: asyncio.Event, state: AppState) -> None:
    """Requeue or fail jobs with expired leases every ``reap_every_s``, until stopping."""

    def reap() -> int:
        with session_scope(state.sessions) as session:
            return jobs_service.reap_expired_leases(session)

    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), state.settings.reap_every_s)
        if stopping.is_set():
            return
        try:
            if await run_in_threadpool(reap):
                state.notifier.notify_all()
        except Exception:
            log.exception("lease reaper failed; retrying")


def _prepare_canary(state: AppState) -> None:
    """Export and store the ONNX canary model before the first claim (every agent's first
    claim wants it at once); if it fails, the first claim tries again."""
    try:
        with session_scope(state.sessions) as session:
            state.canaries.model_id(session, ModelFormat.onnx)
    except Exception:
        log.warning("could not prepare the canary model; the first claim will", exc_info=True)
