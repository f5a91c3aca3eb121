from __future__ import annotations

import io
import zipfile

from fastapi import APIRouter, Response, status

from latlab.datasets.latbench import DatasetFileError, write_latbench
from latlab.datasets.tables import datasheet, write_csv, write_parquet
from latlab.schemas import DatasetCreate, DatasetFormat, DatasetOut
from server.datasets import service
from server.deps import SessionDep, StateDep, UserAuth
from server.errors import InvalidInput

router = APIRouter(tags=["datasets"])


@router.post(
    "/datasets",
    response_model=DatasetOut,
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[UserAuth],
)
def create_dataset(body: DatasetCreate, session: SessionDep, state: StateDep) -> DatasetOut:
    """Start a campaign: the archs are exported, uploaded and queued in the background."""
    dataset = service.create_campaign(session, body)
    session.commit()
    state.preparer.wake()
    return dataset


@router.get("/datasets", response_model=list[DatasetOut], dependencies=[UserAuth])
def list_datasets(session: SessionDep) -> list[DatasetOut]:
    return service.list_datasets(session)


@router.get("/datasets/{dataset_id}", response_model=DatasetOut, dependencies=[UserAuth])
def get_dataset(dataset_id: str, session: SessionDep) -> DatasetOut:
    """The dataset with its progress: archs prepared, entries done, failed and pending."""
    return service.dataset_out(session, service.get_dataset(session, dataset_id))


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
    dataset = service.get_dataset(session, dataset_id)
    dump = service.dataset_dump(session, dataset, with_ops=format == DatasetFormat.parquet)
    try:
        if format == DatasetFormat.csv:
            return Response(write_csv(dump)["measurements.csv"], media_type="text/csv")
        if format == DatasetFormat.parquet:
            files = write_parquet(dump)
        else:
            files = write_latbench(dump, as_json=format == DatasetFormat.json)
            files["README.md"] = datasheet(dump).encode()
    except DatasetFileError as exc:
        raise InvalidInput(str(exc)) from exc
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in sorted(files.items()):
            archive.writestr(name, data)
    filename = f"{dataset.name}-{format.value}.zip".replace('"', "")
    return Response(
        buffer.getvalue(),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
