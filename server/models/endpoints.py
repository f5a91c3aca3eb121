from __future__ import annotations

from typing import Annotated

from fastapi import File, Query, Request, Response, UploadFile, status
from fastapi.responses import StreamingResponse

from latlab.schemas import Deleted, ModelOut
from latlab.server.deps import (
    TOTAL_COUNT,
    Offset,
    SessionDep,
    StateDep,
    UserAuth,
    UserOrDevice,
    UserWrite,
    set_total_count,
)
from latlab.server.errors import BadRequest
from latlab.server.models import service
from latlab.server.routing import api_router
from latlab.server.uploads import (
    check_declared_length,
    copy_limited,
    safe_filename,
    scratch_file,
)

router = api_router(tags=["models"])


@router.post(
    "/models",
    response_model=ModelOut,
    status_code=status.HTTP_201_CREATED,
    dependencies=[UserWrite],
    responses={200: {"model": ModelOut, "description": "Already stored (deduplicated)"}},
)
def upload_model(
    request: Request,
    response: Response,
    session: SessionDep,
    state: StateDep,
    file: Annotated[UploadFile, File(description="A self-contained .onnx file")],
) -> ModelOut:
    """Upload an ONNX model; its id is the sha256 of its bytes. 201 new, 200 already stored."""
    limit = state.settings.max_model_bytes
    check_declared_length(request, limit)
    with scratch_file(state.settings) as tmp_path:
        with tmp_path.open("wb") as tmp:
            copied = copy_limited(file, tmp, limit)
        if copied == 0:
            raise BadRequest("the uploaded file is empty")
        model, created = service.store_model(
            session,
            state.blobs,
            tmp_path,
            safe_filename(file.filename, "model.onnx"),
            service.ModelLimits.of(state.settings),
        )
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return model


@router.get(
    "/models", response_model=list[ModelOut], dependencies=[UserAuth], responses=TOTAL_COUNT
)
def list_models(
    session: SessionDep,
    response: Response,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Offset = 0,
    newest_first: bool = False,
) -> list[ModelOut]:
    """Models oldest first (``newest_first``: the latest first); ``X-Total-Count``: how many."""
    models = service.list_models(session, limit, offset, newest_first)
    set_total_count(response, models, limit, offset, lambda: service.count_models(session))
    return [service.model_out(m) for m in models]


@router.get("/models/{model_id}", response_model=ModelOut, dependencies=[UserAuth])
def get_model(model_id: str, session: SessionDep) -> ModelOut:
    return service.model_out(service.get_model(session, model_id))


@router.delete("/models/{model_id}", response_model=Deleted, dependencies=[UserWrite])
def delete_model(
    model_id: str,
    session: SessionDep,
    state: StateDep,
    force: Annotated[
        bool, Query(description="delete it even though datasets or LUTs use it")
    ] = False,
) -> Deleted:
    """Delete the model, its jobs (any state), their measurements and per-op rows, and its
    file (one transaction; rows removed per table in the answer). 409 naming them while a
    dataset or LUT uses it, unless ``force``: then their archs or micro-models measured with it
    go. The device canary's reference model is never deleted (409)."""
    return service.delete_model(
        session, state.blobs, model_id, force=force, canary_ids=state.canaries.known_ids()
    )


@router.get(
    "/models/{model_id}/content",
    response_class=StreamingResponse,
    dependencies=[UserOrDevice],
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def download_model(model_id: str, session: SessionDep, state: StateDep) -> StreamingResponse:
    """The model file's bytes (users and agents)."""
    model = service.get_model(session, model_id)
    return StreamingResponse(
        state.blobs.iter_chunks(model.id),
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="{model.id}.{model.format}"',
            "Content-Length": str(model.size_bytes),
        },
    )
