from __future__ import annotations

import json
from typing import Annotated

from fastapi import Query, Response, status

from latlab.schemas import Deleted, LutCreate, LutFormat, LutOut
from latlab.server.deps import SessionDep, StateDep, UserAuth, UserWrite
from latlab.server.devices.service import device_filter
from latlab.server.luts import service
from latlab.server.routing import api_router

router = api_router(tags=["luts"])


@router.post(
    "/luts", response_model=LutOut, status_code=status.HTTP_202_ACCEPTED, dependencies=[UserWrite]
)
def create_lut(body: LutCreate, session: SessionDep, state: StateDep) -> LutOut:
    """Request a LUT; it is built in the background (``measured-ops``: from stored per-op
    rows; ``micro-models``: one micro-model per kernel, queued on the device)."""
    lut = service.create_lut(session, body)
    session.commit()
    state.background.wake()
    return lut


@router.get("/luts", response_model=list[LutOut], dependencies=[UserAuth])
def list_luts(
    session: SessionDep, device_id: Annotated[str | None, Query(max_length=200)] = None
) -> list[LutOut]:
    return service.list_luts(session, device_filter(session, device_id))


@router.get("/luts/{lut_id}", response_model=LutOut, dependencies=[UserAuth])
def get_lut(lut_id: str, session: SessionDep) -> LutOut:
    """The LUT's state, progress (micro-models done/failed/pending) and calibration."""
    return service.lut_out(session, service.get_lut(session, lut_id))


@router.delete("/luts/{lut_id}", response_model=Deleted, dependencies=[UserWrite])
def delete_lut(lut_id: str, session: SessionDep) -> Deleted:
    """Delete the LUT and its micro-model rows, with the micro-model jobs no other LUT or
    dataset shares (any state) and their measurements (one transaction; rows removed per
    table in the answer). A LUT still being built stops."""
    return service.delete_lut(session, lut_id)


@router.get(
    "/luts/{lut_id}/export",
    dependencies=[UserAuth],
    response_class=Response,
    responses={200: {"content": {"application/json": {}, "application/yaml": {}}}},
)
def export_lut(lut_id: str, session: SessionDep, format: LutFormat = LutFormat.json) -> Response:
    """A ready LUT: ``json`` (latlab's format: entries, calibration, fallback, config) or
    ``yaml`` (OFA/ProxylessNAS style: ``key: {count, mean, std}`` in ms)."""
    table = service.lookup_table(service.get_lut(session, lut_id))
    if format == LutFormat.yaml:
        return Response(table.to_yaml(), media_type="application/yaml")
    return Response(json.dumps(table.to_json(), indent=1), media_type="application/json")
