"""Hostile input, class 8: parameters of background work. Space parameters are checked against
each space's own bounds at the request (422, nothing stored); a background step that fails
fails its item with the reason and moves on — at once for what its input causes, on the third
time for anything else — rolls its partial writes back and leaves no temporary file; the
database's own connection errors are the only ones the loop retries. On SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from latlab.client import Client
from latlab.errors import ApiError
from latlab.export.files import model_file
from latlab.onnx_summary import MAX_NODES, load_onnx, summarize_onnx
from latlab.runtimes import ModelFormat
from latlab.runtimes.onnxruntime import OnnxRuntimeConfig
from latlab.schemas import DatasetCreate, DatasetState, LutCreate, LutSource, LutState
from latlab.server.background import MAX_FAILURES, guarded
from latlab.server.blobstore import LocalBlobStore
from latlab.server.config import Settings
from latlab.server.datasets.builder import prepare_next
from latlab.server.db import create_db_engine, session_scope, utcnow
from latlab.server.embedded import EmbeddedServer
from latlab.server.models.service import ModelLimits
from latlab.server.tables import Dataset, DatasetArch, DatasetEntry, Job, Lut, Model
from latlab.spaces import SPACES, Param, SpaceParamError, get_space
from tests.factories import API_KEY, cnn_bytes, make_settings, register, wait_for
from tests.test_api_models import stored_blobs

FAST = OnnxRuntimeConfig(
    protocol="fixed", warmup_runs=1, warmup_s=0, timed_runs=3, timed_s=0, profile_runs=1
)
#: 40 nodes exported (skips only) and 340 (a 3x3 conv on every edge)
SMALL = "|skip_connect~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|"
LARGE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def counts(settings: Settings) -> dict[str, int]:
    """Rows of every table background work writes, and files under the blob store (its
    temporary upload folder included)."""
    engine = create_db_engine(settings.resolved_database_url)
    try:
        with Session(engine) as session:
            rows = {
                t.__tablename__: session.scalar(select(func.count()).select_from(t)) or 0
                for t in (Dataset, DatasetArch, DatasetEntry, Job, Lut, Model)
            }
    finally:
        engine.dispose()
    return {**rows, "files": len(stored_blobs(settings))}


# --------------------------------------------------------------------------- the bounds


@given(st.integers(-(2**40), 2**40), st.integers(1, 64), st.integers(1, 64), st.integers(0, 64))
def test_a_param_takes_exactly_the_values_its_bounds_name(
    value: int, low: int, span: int, step: int
) -> None:
    param = Param(low, low + span * max(step, 1), multiple_of=max(step, 1))
    inside = param.low <= value <= param.high and value % param.multiple_of == 0
    if inside:
        assert param.check("s", "p", value) == value
    else:
        with pytest.raises(SpaceParamError, match=param.describe()):
            param.check("s", "p", value)


@pytest.mark.parametrize("space", sorted(SPACES))
def test_the_largest_network_a_space_allows_is_one_a_server_stores(space: str) -> None:
    """The upper bounds are not arbitrary: at every parameter's maximum the exported network
    stays within the default model limits (nodes, largest tensor)."""
    params = {name: p.high - p.high % p.multiple_of for name, p in SPACES[space].params.items()}
    built = get_space(space, **params)
    summary = summarize_onnx(
        load_onnx(model_file(built.graph(built.example()), ModelFormat.onnx, seed=0))
    )
    limits = ModelLimits()
    assert summary.n_nodes <= MAX_NODES == limits.max_nodes
    assert (summary.largest_tensor_bytes or 0) <= limits.max_tensor_bytes


OUT_OF_BOUNDS = [
    ("proxyless", {"resolution": 1_048_576}, "proxyless resolution must be 32..512"),
    ("proxyless", {"resolution": 100}, "a multiple of 32"),
    ("proxyless", {"n_classes": 10**9}, "proxyless n_classes must be 1..10000"),
    ("proxyless", {"n_classes": 0}, "n_classes must be 1..10000"),
    ("nb201", {"resolution": 2}, "nb201 resolution must be 4..512"),
    ("nb201", {"cells_per_stage": 1000}, "cells_per_stage must be 1..16"),
    ("nb201", {"width": 3}, "nb201 has no parameter 'width'; its parameters: resolution"),
]


@pytest.fixture
def lab(tmp_path: Path, db_url: str) -> Iterator[tuple[EmbeddedServer, Client, str]]:
    """A live server with a registered device that takes no jobs: the server, a user's client
    and the device's id."""
    with EmbeddedServer(make_settings(tmp_path, db_url)) as server:
        agent_client, registered = register(server.url)
        agent_client.close()
        with Client(server.url, API_KEY) as client:
            yield server, client, registered.device_id


@pytest.mark.parametrize(("space", "params", "message"), OUT_OF_BOUNDS)
def test_space_params_outside_the_spaces_bounds_are_a_422_on_every_request(
    lab: tuple[EmbeddedServer, Client, str], space: str, params: dict[str, int], message: str
) -> None:
    server, client, device_id = lab
    before = counts(server.settings)
    requests: list[Any] = [
        lambda: client.create_dataset(
            DatasetCreate(name="c", space=space, n=3, space_params=params, device_ids=[device_id])
        ),
        lambda: client.create_lut(
            LutCreate(
                device_id=device_id,
                source=LutSource.micro_models,
                space=space,
                space_params=params,
                n=2,
            )
        ),
        lambda: client.predict(device_id, space=space, archs=[0], space_params=params),
        lambda: client.import_dataset(
            [("t.csv", f"space,arch,device,latency_ms\n{space},0,d,1.0\n".encode())],
            "i",
            space=space,
            space_params=params,
        ),
    ]
    for request in requests:
        with pytest.raises(ApiError) as err:
            request()
        assert err.value.status == 422, err.value
        assert message in err.value.message
    assert counts(server.settings) == before
    assert httpx.get(f"{server.url}/healthz").status_code == 200


# --------------------------------------------------------------------------- failing items


def test_archs_that_cannot_be_stored_fail_with_the_reason_and_the_campaign_goes_on(
    tmp_path: Path, db_url: str
) -> None:
    """A node limit between two archs' sizes: the large arch fails when it is prepared (a
    LatlabError, so at once), the small one is queued; a campaign of large archs only fails;
    the campaign after it is prepared all the same, and no file is left behind."""
    settings = make_settings(tmp_path, db_url, max_model_nodes=100)
    with EmbeddedServer(settings) as server, Client(server.url, API_KEY) as client:
        agent_client, registered = register(server.url)
        agent_client.close()
        device = [registered.device_id]
        mixed = client.create_dataset(
            DatasetCreate(name="m", space="nb201", archs=[LARGE, SMALL], device_ids=device)
        )
        hopeless = client.create_dataset(
            DatasetCreate(name="h", space="nb201", archs=[LARGE], device_ids=device)
        )
        after = client.create_dataset(
            DatasetCreate(name="a", space="nb201", archs=[SMALL, "0,0,0,0,0,1"], device_ids=device)
        )
        wait_for(lambda: client.dataset(after.id).state == DatasetState.measuring)

        m = client.dataset(mixed.id)
        assert m.state == DatasetState.measuring
        assert (m.progress.prepared, m.progress.unprepared) == (1, 1)
        assert (m.progress.failed, m.progress.pending) == (1, 1)
        h = client.wait_dataset(hopeless.id, timeout_s=20)
        assert h.state == DatasetState.failed
        assert h.error is not None
        assert h.error.startswith("no arch could be prepared; the first: ")
        assert "340 nodes" in h.error and "100" in h.error  # the model limit's own message
        assert client.dataset(after.id).progress.prepared == 2

        stored = counts(settings)
        assert stored["models"] == 2 and stored["jobs"] == 2  # SMALL shared, and the other
        assert stored["files"] == 2  # two blobs, no temporary file
        assert httpx.get(f"{server.url}/healthz").status_code == 200


class FailingBlobs(LocalBlobStore):
    """A blob store whose disk is full: what no input causes and a retry might cure."""

    def put_file(self, path: Path) -> str:
        raise OSError(28, "No space left on device")


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = create_db_engine(db_url)
    yield sessionmaker(engine, expire_on_commit=False)
    engine.dispose()


def campaign(session: Session, archs: list[str], **space_params: int) -> str:
    dataset = Dataset(
        id=uuid.uuid4().hex,
        name="c",
        space="proxyless" if space_params else "nb201",
        space_params=space_params,
        source="campaign",
        state=DatasetState.preparing.value,
        form="pruned",
        config=FAST.model_dump(mode="json"),
        provenance={"devices": []},
        created_at=utcnow(),
    )
    session.add(dataset)
    session.flush()
    for i, arch in enumerate(archs):
        session.add(DatasetArch(dataset_id=dataset.id, position=i, arch=arch, arch_index="0"))
    return dataset.id


def test_an_unexpected_error_fails_the_arch_on_the_third_attempt_and_leaves_no_file(
    tmp_path: Path, db_url: str, sessions: sessionmaker[Session]
) -> None:
    settings = make_settings(tmp_path, db_url)
    blobs = FailingBlobs(settings.resolved_blob_dir)
    with session_scope(sessions) as session:
        dataset_id = campaign(session, [SMALL, LARGE])
    for attempt in range(1, MAX_FAILURES + 1):
        with session_scope(sessions) as session:
            assert prepare_next(session, blobs, settings)
        with session_scope(sessions) as session:
            first = session.scalars(select(DatasetArch).order_by(DatasetArch.position)).first()
            assert first is not None and first.failures == attempt
            assert (first.error is None) == (attempt < MAX_FAILURES)
    assert (
        first.error
        == f"OSError: [Errno 28] No space left on device (after {MAX_FAILURES} attempts)"
    )
    with session_scope(sessions) as session:  # the next arch is tried, not the failed one
        assert prepare_next(session, blobs, settings)
        second = session.scalars(select(DatasetArch).where(DatasetArch.position == 1)).one()
        assert second.failures == 1
    assert counts(settings) == {
        "datasets": 1, "dataset_archs": 2, "dataset_entries": 0, "jobs": 0, "luts": 0,
        "models": 0, "files": 0,
    }  # fmt: skip
    assert dataset_id


def test_a_campaign_stored_with_params_now_out_of_bounds_fails_at_once(
    tmp_path: Path, db_url: str, sessions: sessionmaker[Session]
) -> None:
    """What a server before the bounds accepted (the 1-megapixel ProxylessNAS) fails with the
    reason instead of being retried forever, and the campaign behind it is prepared."""
    settings = make_settings(tmp_path, db_url)
    blobs = LocalBlobStore(settings.resolved_blob_dir)
    with session_scope(sessions) as session:
        stuck = campaign(session, ["0"] * 1, resolution=1_048_576)
    with session_scope(sessions) as session:
        fine = campaign(session, [SMALL, LARGE])
    steps = 0
    while True:
        with session_scope(sessions) as session:
            if not prepare_next(session, blobs, settings):
                break
        steps += 1
    with session_scope(sessions) as session:
        old = session.get(Dataset, stuck)
        assert old is not None and old.state == DatasetState.failed
        assert old.error == "proxyless resolution must be 32..512, a multiple of 32; got 1048576"
        new = session.get(Dataset, fine)
        assert new is not None and new.state == DatasetState.measuring
    assert steps == 4  # fail the old one, two archs, mark the new one measuring
    assert counts(settings)["files"] == 2


def test_a_failing_lut_takes_back_the_micro_models_it_had_queued(
    tmp_path: Path, db_url: str
) -> None:
    """An operator lowers the tensor limit after a model was stored: a micro-model LUT over
    small NB201 kernels and that model fails at the model's kernel with the limit's message,
    and the micro-models and jobs it had queued for the kernels before it are rolled back."""
    with EmbeddedServer(make_settings(tmp_path, db_url)) as server:
        agent_client, registered = register(server.url)
        agent_client.close()
        with Client(server.url, API_KEY) as client:
            big = client.upload_model("big.onnx", data=cnn_bytes(resolution=128))  # 512 KiB
    settings = make_settings(tmp_path, db_url, max_tensor_bytes=256 * 1024)
    with EmbeddedServer(settings) as server, Client(server.url, API_KEY) as client:
        before = counts(settings)
        lut = client.create_lut(
            LutCreate(
                device_id=registered.device_id,
                source=LutSource.micro_models,
                space="nb201",
                space_params={"resolution": 8},  # its kernels' tensors: 147 KiB at most
                archs=[LARGE],
                model_ids=[big.id],
            )
        )
        wait_for(lambda: client.lut(lut.id).state != LutState.preparing)
        failed = client.lut(lut.id)
        assert failed.state == LutState.failed
        assert failed.error is not None and "LATLAB_MAX_TENSOR_BYTES" in failed.error
        assert counts(settings) == {**before, "luts": 1}


def test_the_databases_own_errors_reach_the_loop_and_nothing_is_counted(
    sessions: sessionmaker[Session],
) -> None:
    class Row:
        failures = 0

    row, reasons = Row(), []

    def lost_connection() -> None:
        raise OperationalError("SELECT 1", {}, Exception("server closed the connection"))

    with session_scope(sessions) as session:
        with pytest.raises(OperationalError):
            guarded(session, row, lost_connection, reasons.append)
        guarded(session, row, lambda: 1 / 0 and None, reasons.append)
    assert row.failures == 1 and reasons == []
