"""The dashboard's pages: the lab, the queue, datasets, measurements, models, predictors and
LUTs, each at a URL of its own, rendered on the server from the same services the API uses.
Reads need a signed-in viewer (any user key); the write actions (cancel, revoke, switch the
current predictor) a read-write key and a same-origin form post."""

from __future__ import annotations

import functools
import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from typing import Annotated, Any, ParamSpec

import numpy as np
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from latlab.errors import LatlabError
from latlab.schemas import DatasetFormat, JobState, PredictorOut
from latlab.server.canary import repository as canary_repository
from latlab.server.dashboard import charts
from latlab.server.dashboard.render import Markup, error_page, render
from latlab.server.dashboard.session import COOKIE, Viewer, verify
from latlab.server.dashboard.signin import local_path
from latlab.server.datasets import service as datasets
from latlab.server.deps import AppState, SessionDep, StateDep
from latlab.server.devices import service as devices
from latlab.server.errors import Forbidden, NotFound, ServerError
from latlab.server.jobs import service as jobs
from latlab.server.luts import service as luts
from latlab.server.measurements import service as measurements
from latlab.server.models import repository as models_repository
from latlab.server.models import service as models
from latlab.server.predict.service import MAX_BATCH
from latlab.server.registry import service as registry

__all__ = ["SignInRequired", "router"]

router = APIRouter(include_in_schema=False)

#: Rows per page of the long lists.
PAGE = 50
#: Points of a scatter (a predictor's predicted vs measured, a dataset's latency vs MACs),
#: evenly spaced over its rows.
SCATTER_POINTS = 400
#: Kernels drawn as bars on a measurement's or LUT's page; the rest are summed into one.
TOP_KERNELS = 15


class SignInRequired(Exception):
    """No valid sign-in: the page answers with a redirect to the sign-in form."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


def _here(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def _viewer(request: Request, state: StateDep) -> Viewer:
    viewer = verify(state.settings, request.cookies.get(COOKIE))
    if viewer is None:
        raise SignInRequired(_here(request))
    return viewer


ViewerDep = Annotated[Viewer, Depends(_viewer)]

P = ParamSpec("P")


def page(fn: Callable[P, Response]) -> Callable[P, Response]:
    """A service error on a page (an unknown id, a read-only key acting) is a page that says
    so, with its status, not the API's JSON body."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
        request, viewer = kwargs["request"], kwargs.get("viewer")
        assert isinstance(request, Request)
        try:
            return fn(*args, **kwargs)
        except ServerError as exc:
            return error_page(request, viewer, exc.status, exc.message)  # type: ignore[arg-type]
        except LatlabError as exc:
            return error_page(request, viewer, 422, str(exc))  # type: ignore[arg-type]

    return wrapper


def _check_write(request: Request, viewer: Viewer) -> None:
    if not viewer.can_write:
        raise Forbidden("signed in with a read-only key: this needs a read-write key")
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
        raise Forbidden("a form from another site cannot act here")


def _back(to: str, fallback: str) -> RedirectResponse:
    """Back to the page the form was on (a path of this site only)."""
    return RedirectResponse(local_path(to, fallback), status_code=303)


def _names(session: Session) -> dict[str, str]:
    return {d.id: d.name for d in devices.list_devices(session)}


# --------------------------------------------------------------------------- the lab


@router.get("/", response_class=HTMLResponse)
@page
def lab(request: Request, viewer: ViewerDep, session: SessionDep, state: StateDep) -> Response:
    offline_after = state.settings.offline_after_s
    listed = [devices.device_out(d, offline_after) for d in devices.list_devices(session)]
    listed.sort(key=lambda d: (not d.online, d.name))
    leased = jobs.list_jobs(session, state=JobState.leased, limit=1000)
    current = {j.claimed_by: j for j in leased if j.claimed_by}
    return render(
        request,
        "lab.html",
        viewer,
        devices=listed,
        current=current,
        online=sum(d.online for d in listed),
        queued=jobs.count_jobs(session, state=JobState.queued),
    )


@router.get("/lab/{device_id}", response_class=HTMLResponse)
@page
def device(
    device_id: str, request: Request, viewer: ViewerDep, session: SessionDep, state: StateDep
) -> Response:
    row = devices.get_device(session, device_id)
    out = devices.device_out(row, state.settings.offline_after_s)
    points = canary_repository.series(session, row.id, limit=500)
    canary = None
    if points:
        t0 = points[0].measured_at
        canary = Markup(
            charts.series(
                [((p.measured_at - t0).total_seconds() / 3600, p.median_ms) for p in points],
                title=f"canary latency on {out.name}",
                x_label="hours since the first canary",
                y_label="median ms",
            )
        )
    recent = measurements.list_measurements(session, device_id=row.id, limit=20, newest_first=True)
    latest = recent[0] if recent else None
    thermal = _thermal(latest.provenance if latest is not None else None)
    lead = jobs.list_jobs(session, state=JobState.leased, device_id=row.id, limit=5)
    return render(
        request,
        "device.html",
        viewer,
        device=out,
        canary=canary,
        canaries=len(points),
        recent=recent,
        thermal=thermal,
        leased=lead,
        predictors=registry.list_predictors(session, row.id),
        luts=luts.list_luts(session, row.id),
    )


def _thermal(provenance: dict[str, Any] | None) -> dict[str, Any]:
    """What the latest measurement says of the device's heat: the host's reading and limit,
    a phone's thermal status."""
    found: dict[str, Any] = {}
    for where in (provenance or {}, (provenance or {}).get("host") or {}):
        if isinstance(where, dict):
            found.update({k: v for k, v in where.items() if "thermal" in k or "temp" in k})
    return found


@router.post("/lab/{device_id}/revoke")
@page
def revoke(
    device_id: str,
    request: Request,
    viewer: ViewerDep,
    session: SessionDep,
    back: Annotated[str, Form()] = "/",
) -> Response:
    _check_write(request, viewer)
    devices.revoke_device(session, device_id)
    return _back(back, "/")


# --------------------------------------------------------------------------- the queue


@router.get("/queue", response_class=HTMLResponse)
@page
def queue(
    request: Request,
    viewer: ViewerDep,
    session: SessionDep,
    state: Annotated[JobState | None, Query()] = None,
    device: Annotated[str | None, Query(max_length=200)] = None,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    rows: Annotated[bool, Query()] = False,
) -> Response:
    device_id = devices.device_filter(session, device) if device else None
    listed = jobs.list_jobs(
        session, state=state, device_id=device_id, limit=PAGE, offset=offset, newest_first=True
    )
    counts = {s: jobs.count_jobs(session, state=s, device_id=device_id) for s in JobState}
    context: dict[str, Any] = {
        "jobs": listed,
        "counts": counts,
        "state": state,
        "device": device or "",
        "offset": offset,
        "page": PAGE,
        "total": counts[state] if state is not None else sum(counts.values()),
        "names": _names(session),
    }
    # the live table polls this page for its rows alone
    return render(request, "queue_rows.html" if rows else "queue.html", viewer, **context)


@router.post("/queue/{job_id}/cancel")
@page
def cancel(
    job_id: str,
    request: Request,
    viewer: ViewerDep,
    session: SessionDep,
    back: Annotated[str, Form()] = "/queue",
) -> Response:
    _check_write(request, viewer)
    jobs.cancel_job(session, job_id)
    return _back(back, "/queue")


# --------------------------------------------------------------------------- datasets


@router.get("/datasets", response_class=HTMLResponse)
@page
def dataset_list(request: Request, viewer: ViewerDep, session: SessionDep) -> Response:
    listed = sorted(datasets.list_datasets(session), key=lambda d: d.created_at, reverse=True)
    return render(request, "datasets.html", viewer, datasets=listed, names=_names(session))


@router.get("/datasets/{dataset_id}", response_class=HTMLResponse)
@page
def dataset(
    dataset_id: str,
    request: Request,
    viewer: ViewerDep,
    session: SessionDep,
    rows: Annotated[bool, Query()] = False,
) -> Response:
    row = datasets.get_dataset(session, dataset_id)
    out = datasets.dataset_out(session, row)
    if rows:  # the live progress polls this
        return render(request, "dataset_progress.html", viewer, dataset=out)
    names = _names(session)
    dump = datasets.dataset_dump(session, row, full=False)
    by_device: dict[str, list[float]] = defaultdict(list)
    for m in dump.measurements:
        by_device[m.device_id].append(m.latency_ms)
    histograms = [
        Markup(charts.histogram(values, title=f"latency on {names.get(device_id, device_id)}"))
        for device_id, values in sorted(by_device.items(), key=lambda kv: -len(kv[1]))[:8]
    ]
    model_of = {a.arch: a.model_id for a in dump.archs if a.model_id}
    macs = models_repository.macs_of(session, set(model_of.values()))
    points = [
        (macs[model_of[m.arch]] / 1e6, m.latency_ms, f"{names.get(m.device_id, '')} {m.arch}")
        for m in dump.measurements
        if m.arch in model_of and model_of[m.arch] in macs
    ]
    points = points[:: max(1, len(points) // SCATTER_POINTS)]
    scatter = None
    if points:
        scatter = Markup(
            charts.scatter(
                [(x, y) for x, y, _ in points],
                title="latency vs MACs",
                x_label="M MACs",
                y_label="latency ms",
                labels=[label for _, _, label in points],
            )
        )
    return render(
        request,
        "dataset.html",
        viewer,
        dataset=out,
        names=names,
        histograms=histograms,
        scatter=scatter,
        formats=list(DatasetFormat),
        measured=len(dump.measurements),
        recent=dump.measurements[-20:][::-1],
    )


@router.get("/datasets/{dataset_id}/export/{format}")
@page
def export(
    dataset_id: str, format: DatasetFormat, request: Request, viewer: ViewerDep, session: SessionDep
) -> Response:
    found = datasets.export_dataset(session, dataset_id, format)
    if found.filename is None:  # the API answers CSV inline; a page downloads it as a file
        found = replace(found, filename=f"{datasets.get_dataset(session, dataset_id).name}.csv")
    return Response(found.data, media_type=found.media_type, headers=found.headers)


# --------------------------------------------------------------------------- measurements


@router.get("/measurements/{measurement_id}", response_class=HTMLResponse)
@page
def measurement(
    measurement_id: int, request: Request, viewer: ViewerDep, session: SessionDep
) -> Response:
    m = measurements.get_measurement(session, measurement_id)
    samples = m.samples_ms or []
    ops = sorted(m.ops or [], key=lambda o: -o.dur_us)
    top = [(f"{o.op_type} {o.node_name}", o.dur_us / 1e3) for o in ops[:TOP_KERNELS]]
    rest = ops[TOP_KERNELS:]
    if rest:
        top.append((f"the other {len(rest)} kernels", sum(o.dur_us for o in rest) / 1e3))
    by_type: dict[str, float] = defaultdict(float)
    for o in ops:
        by_type[o.op_type] += o.dur_us / 1e3
    return render(
        request,
        "measurement.html",
        viewer,
        m=m,
        device=devices.get_device(session, m.device_id),
        histogram=Markup(charts.histogram(samples, title="samples")) if samples else None,
        run_order=Markup(charts.run_order(samples, title="samples in run order"))
        if samples
        else None,
        kernels=Markup(charts.bars(top, title="kernels by time")) if top else None,
        op_types=sorted(by_type.items(), key=lambda kv: -kv[1]),
        kernel_ms=sum(o.dur_us for o in ops) / 1e3,
        provenance=json.dumps(m.provenance or {}, indent=2, sort_keys=True),
        config=json.dumps(m.config.model_dump(mode="json") if m.config else {}, indent=2),
    )


# --------------------------------------------------------------------------- models


@router.get("/models", response_class=HTMLResponse)
@page
def model_list(
    request: Request,
    viewer: ViewerDep,
    session: SessionDep,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> Response:
    listed = [models.model_out(m) for m in models.list_models(session, PAGE, offset, True)]
    total = models.count_models(session)
    return render(
        request, "models.html", viewer, models=listed, offset=offset, page=PAGE, total=total
    )


@router.get("/models/{model_id}", response_class=HTMLResponse)
@page
def model(model_id: str, request: Request, viewer: ViewerDep, session: SessionDep) -> Response:
    out = models.model_out(models.get_model(session, model_id))
    measured = measurements.list_measurements(
        session, model_id=out.id, limit=500, newest_first=True
    )
    names = _names(session)
    per_device: dict[str, list[Any]] = defaultdict(list)
    for m in measured:
        per_device[m.device_id].append(m)
    counts = sorted(out.summary.op_counts.items(), key=lambda kv: -kv[1])
    return render(
        request,
        "model.html",
        viewer,
        model=out,
        names=names,
        per_device=sorted(per_device.items(), key=lambda kv: names.get(kv[0], kv[0])),
        op_counts=counts,
        op_chart=Markup(charts.bars([(k, float(v)) for k, v in counts], title="ops", unit="")),
    )


# --------------------------------------------------------------------------- predictors, LUTs


@router.get("/predictors", response_class=HTMLResponse)
@page
def predictor_list(request: Request, viewer: ViewerDep, session: SessionDep) -> Response:
    listed = registry.list_predictors(session, None)
    listed.sort(key=lambda p: (p.device_id, p.space or "", p.runtime, -p.version))
    tables = sorted(luts.list_luts(session), key=lambda lut: lut.created_at, reverse=True)
    return render(
        request, "predictors.html", viewer, predictors=listed, luts=tables, names=_names(session)
    )


@router.get("/predictors/{predictor_id}", response_class=HTMLResponse)
@page
def predictor(
    predictor_id: str, request: Request, viewer: ViewerDep, session: SessionDep, state: StateDep
) -> Response:
    out = registry.predictor_out(registry.get_predictor(session, predictor_id))
    pairs, where = _predicted_vs_measured(session, state, out)
    scatter = None
    if pairs:
        scatter = Markup(
            charts.scatter(
                [(true, predicted) for _, true, predicted in pairs],
                title="predicted vs measured",
                x_label="measured ms",
                y_label="predicted ms",
                diagonal=True,
                log=True,
                labels=[
                    f"{arch}: {true:.3g} ms measured, {p:.3g} predicted" for arch, true, p in pairs
                ],
            )
        )
    return render(
        request,
        "predictor.html",
        viewer,
        p=out,
        device=devices.get_device(session, out.device_id),
        scatter=scatter,
        where=where,
        metrics=json.dumps(out.metrics, indent=2, sort_keys=True, default=str),
        training=json.dumps(out.training, indent=2, sort_keys=True, default=str),
    )


def _predicted_vs_measured(
    session: Session, state: AppState, out: PredictorOut
) -> tuple[list[tuple[str, float, float]], str]:
    """(arch, measured ms, predicted ms) for the archs of the datasets it was trained on,
    measured on its device (evenly spaced, at most ``SCATTER_POINTS``), and what they are."""
    source = registry.predictor_source(session, out.id)
    if source is None or out.space is None:
        return [], "no space: it answers stored models"
    measured: dict[str, float] = {}
    for dataset_id in out.training.get("datasets") or []:
        try:
            row = datasets.get_dataset(session, str(dataset_id))
        except NotFound:
            continue
        dump = datasets.dataset_dump(session, row, full=False)
        for m in dump.measurements:
            if m.device_id == out.device_id:
                measured.setdefault(m.arch, m.latency_ms)
    if not measured:
        return [], "none of the datasets it was trained on is left"
    archs = list(measured)
    take = np.unique(np.linspace(0, len(archs) - 1, min(SCATTER_POINTS, len(archs))).astype(int))
    chosen: list[str | int] = [archs[i] for i in take][:MAX_BATCH]
    served = state.predictors.get(source, state.blobs)
    estimates = state.predictors.predict_archs(served, out.space, out.space_params, chosen)
    pairs = [
        (str(a), measured[str(a)], float(ms))
        for a, ms in zip(chosen, estimates.latency_ms.tolist(), strict=True)
    ]
    where = (
        f"{len(pairs)} of the {len(archs)} archs of its training datasets measured on the device "
        "(training and held-out archs alike: the held-out figures are in the metrics)"
    )
    return pairs, where


@router.post("/predictors/{predictor_id}/current")
@page
def make_current(
    predictor_id: str,
    request: Request,
    viewer: ViewerDep,
    session: SessionDep,
    back: Annotated[str, Form()] = "/predictors",
) -> Response:
    _check_write(request, viewer)
    registry.make_current(session, predictor_id)
    return _back(back, "/predictors")


@router.get("/luts/{lut_id}", response_class=HTMLResponse)
@page
def lut(lut_id: str, request: Request, viewer: ViewerDep, session: SessionDep) -> Response:
    row = luts.get_lut(session, lut_id)
    out = luts.lut_out(session, row)
    entries = []
    if out.entries:
        table = luts.lookup_table(row)
        entries = sorted(table.entries.values(), key=lambda e: -e.median_us)
    top = [(f"{e.op_type} {e.key}"[:80], e.median_us / 1e3) for e in entries[:TOP_KERNELS]]
    return render(
        request,
        "lut.html",
        viewer,
        lut=out,
        device=devices.get_device(session, out.device_id),
        entries=entries[:500],
        total_entries=len(entries),
        chart=Markup(charts.bars(top, title="largest entries")) if top else None,
    )
