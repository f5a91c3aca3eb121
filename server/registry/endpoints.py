from __future__ import annotations

import io
from typing import Annotated, Any

from fastapi import File, Form, Query, Request, Response, UploadFile, status

from latlab import untrusted
from latlab.schemas import Deleted, PredictorOut
from latlab.server.deps import SessionDep, StateDep, UserAuth, UserWrite
from latlab.server.devices.service import device_filter
from latlab.server.errors import InvalidInput, NotFound
from latlab.server.registry import service
from latlab.server.routing import api_router
from latlab.server.uploads import check_declared_length, copy_limited

router = api_router(tags=["predictors"])

#: A predictor artifact (a few MB for 4 x 600 units) and its plot.
MAX_ARTIFACT_BYTES = 256 * 1024 * 1024


def _json_object(text: str | None, what: str) -> dict[str, Any]:
    if not text:
        return {}
    value = untrusted.loads_field(text, what)
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be a JSON object")
    return value


def _read(upload: UploadFile, limit: int) -> bytes:
    buffer = io.BytesIO()
    copy_limited(upload, buffer, limit)
    return buffer.getvalue()


@router.post(
    "/predictors",
    response_model=PredictorOut,
    status_code=status.HTTP_201_CREATED,
    dependencies=[UserWrite],
)
def upload_predictor(
    request: Request,
    session: SessionDep,
    state: StateDep,
    artifact: Annotated[UploadFile, File(description="a predictor .npz made by latlab train")],
    device_id: Annotated[str, Form(max_length=200)],
    runtime: Annotated[str, Form(min_length=1, max_length=100)],
    space: Annotated[str | None, Form(max_length=50)] = None,
    space_params: Annotated[str | None, Form(max_length=1000)] = None,
    training: Annotated[str | None, Form(max_length=100_000)] = None,
    current: Annotated[
        bool | None,
        Form(
            description="serve it for auto predictions; left out: when it is the first version "
            "of its device + runtime + space, or its cross-validated error (metrics.cv.mape) "
            "is lower than the current version's"
        ),
    ] = None,
    plot: Annotated[UploadFile | None, File(description="pred-vs-true scatter, PNG")] = None,
) -> PredictorOut:
    """Register a trained predictor as the next version for the device + runtime; ``current``
    in the answer says whether it serves ``auto`` predictions."""
    check_declared_length(request, MAX_ARTIFACT_BYTES)
    params = _json_object(space_params, "space_params")
    if not all(isinstance(v, int) for v in params.values()):
        raise InvalidInput("space_params values must be integers")
    return service.register_predictor(
        session,
        state.blobs,
        state.settings,
        artifact=_read(artifact, MAX_ARTIFACT_BYTES),
        plot_png=_read(plot, MAX_ARTIFACT_BYTES) if plot is not None else None,
        device_id=device_id,
        runtime=runtime,
        space=space,
        space_params=params,
        training=_json_object(training, "training"),
        current=current,
    )


@router.get("/predictors", response_model=list[PredictorOut], dependencies=[UserAuth])
def list_predictors(
    session: SessionDep, device_id: Annotated[str | None, Query(max_length=200)] = None
) -> list[PredictorOut]:
    return service.list_predictors(session, device_filter(session, device_id))


@router.get("/predictors/{predictor_id}", response_model=PredictorOut, dependencies=[UserAuth])
def get_predictor(predictor_id: str, session: SessionDep) -> PredictorOut:
    """Version, training data, held-out metrics."""
    return service.predictor_out(service.get_predictor(session, predictor_id))


@router.delete("/predictors/{predictor_id}", response_model=Deleted, dependencies=[UserWrite])
def delete_predictor(predictor_id: str, session: SessionDep, state: StateDep) -> Deleted:
    """Delete the version, its artifact and plot. If it was current, the newest older version
    of its device + runtime + space becomes current (``current_predictor`` in the answer), else
    none."""
    return service.delete_predictor(session, state.blobs, predictor_id)


@router.post(
    "/predictors/{predictor_id}/current", response_model=PredictorOut, dependencies=[UserWrite]
)
def make_current(predictor_id: str, session: SessionDep) -> PredictorOut:
    """Serve this version for its device + runtime from now on."""
    return service.make_current(session, predictor_id)


@router.get(
    "/predictors/{predictor_id}/plot",
    dependencies=[UserAuth],
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
def get_plot(predictor_id: str, session: SessionDep, state: StateDep) -> Response:
    """Predicted vs measured latency on the held-out split."""
    row = service.get_predictor(session, predictor_id)
    if row.plot_sha256 is None:
        raise NotFound(f"predictor {predictor_id} has no plot")
    with state.blobs.open(row.plot_sha256) as f:
        return Response(f.read(), media_type="image/png")
