from __future__ import annotations

import io
from typing import Annotated

from fastapi import File, Form, Request, Response, UploadFile, status

from latlab import untrusted
from latlab.datasets.reader import read_import
from latlab.schemas import DatasetCreate, DatasetFormat, DatasetOut, Deleted
from latlab.server.datasets import imports, service
from latlab.server.deps import SessionDep, StateDep, UserAuth, UserWrite
from latlab.server.errors import BadRequest, InvalidInput
from latlab.server.routing import api_router
from latlab.server.uploads import check_declared_length, copy_limited, safe_filename
from latlab.spaces import GraphForm, get_space

#: Form text without NUL characters (JSON bodies are checked by the schemas).
NO_NUL = r"^[^\x00]*$"

router = api_router(tags=["datasets"])


@router.post(
    "/datasets",
    response_model=DatasetOut,
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[UserWrite],
)
def create_dataset(body: DatasetCreate, session: SessionDep, state: StateDep) -> DatasetOut:
    """Start a campaign: the archs are exported, uploaded and queued in the background."""
    dataset = service.create_campaign(session, body)
    session.commit()
    state.background.wake()
    return dataset


@router.post(
    "/datasets/import",
    response_model=DatasetOut,
    status_code=status.HTTP_201_CREATED,
    dependencies=[UserWrite],
)
def import_dataset(
    request: Request,
    session: SessionDep,
    state: StateDep,
    files: Annotated[
        list[UploadFile],
        File(description="LatBench .pickle/.json per device, .csv, or a latlab export .zip"),
    ],
    name: Annotated[str, Form(min_length=1, max_length=200, pattern=NO_NUL)],
    space: Annotated[str | None, Form(max_length=50, pattern=NO_NUL)] = None,
    space_params: Annotated[
        str | None, Form(max_length=1000, pattern=NO_NUL, description="JSON object")
    ] = None,
    note: Annotated[
        str | None, Form(max_length=2000, pattern=NO_NUL, description="citation, licence")
    ] = None,
    form: Annotated[
        GraphForm | None,
        Form(description="the graph form the figures are of (pruned, eager); default unknown"),
    ] = None,
    runtime: Annotated[
        str | None,
        Form(
            max_length=100,
            pattern=NO_NUL,
            description="what the numbers were measured with, for rows whose file names none "
            "(else they are stored as 'unknown')",
        ),
    ] = None,
) -> DatasetOut:
    """Import published or exported latencies as a dataset; rows are marked ``imported``.

    LatBench files are NAS-Bench-201 and name their device by file name; a CSV needs the
    columns ``space, arch, device, latency_ms`` (``runtime`` optional). Rows whose file names
    no runtime get ``runtime`` if given, else ``unknown``. A bad file or row refuses the whole
    import. The answer's ``provenance.import_devices`` lists each device: id, name, whether
    this import created it, rows, runtimes.
    """
    limit = state.settings.max_import_bytes
    check_declared_length(request, limit)
    contents: list[tuple[str, bytes]] = []
    total = 0
    for upload in files:
        buffer = io.BytesIO()
        total += copy_limited(upload, buffer, limit - total)
        if not buffer.getbuffer().nbytes:
            raise BadRequest(f"{upload.filename or 'a file'} is empty")
        contents.append((safe_filename(upload.filename, "upload"), buffer.getvalue()))
    params = _space_params(space_params)
    if space:
        get_space(space, **params)  # an unknown space or parameter is refused before reading
    table = read_import(contents)  # a DatasetFileError (a LatlabError) answers 422
    del contents
    return imports.import_dataset(
        session,
        table,
        name=name,
        space_name=space,
        space_params=params,
        note=note,
        form=form,
        runtime=(runtime or "").strip() or None,
    )


def _space_params(text: str | None) -> dict[str, int]:
    if not text:
        return {}
    params = untrusted.loads_field(text, "space_params")
    if not isinstance(params, dict) or not all(
        isinstance(k, str) and isinstance(v, int) for k, v in params.items()
    ):
        raise InvalidInput('space_params must be a JSON object of integers ({"resolution": 160})')
    return params


@router.get("/datasets", response_model=list[DatasetOut], dependencies=[UserAuth])
def list_datasets(session: SessionDep) -> list[DatasetOut]:
    return service.list_datasets(session)


@router.get("/datasets/{dataset_id}", response_model=DatasetOut, dependencies=[UserAuth])
def get_dataset(dataset_id: str, session: SessionDep) -> DatasetOut:
    """The dataset with its progress: archs prepared, entries done, failed and pending."""
    return service.dataset_out(session, service.get_dataset(session, dataset_id))


@router.delete("/datasets/{dataset_id}", response_model=Deleted, dependencies=[UserWrite])
def delete_dataset(dataset_id: str, session: SessionDep) -> Deleted:
    """Delete the dataset, its archs and entries (one transaction; rows removed per table in
    the answer). A campaign's pending jobs nothing else needs are cancelled; its measured
    measurements and models stay (the lab's, shared with other datasets and LUTs). An
    import's measurements go with it. A campaign still being prepared stops."""
    return service.delete_dataset(session, dataset_id)


@router.get(
    "/datasets/{dataset_id}/export",
    dependencies=[UserAuth],
    response_class=Response,
    responses={200: {"content": {"application/zip": {}, "text/csv": {}}}},
)
def export_dataset(
    dataset_id: str, session: SessionDep, format: DatasetFormat = DatasetFormat.latbench
) -> Response:
    """What is measured so far: ``latbench`` (a zip of one pickle per device, latency in
    seconds), ``json`` (the same as JSON), ``csv``, or ``parquet`` (a zip of tables + README)."""
    export = service.export_dataset(session, dataset_id, format)
    return Response(export.data, media_type=export.media_type, headers=export.headers)
