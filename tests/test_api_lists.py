"""Lists page newest first with their total, and ids are taken by a unique prefix (as the
CLI's tables print them), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import insert

from latlab.client import Client
from latlab.errors import ApiError
from latlab.runtimes.onnxruntime import OnnxRuntimeConfig
from latlab.schemas import JobState
from latlab.server.db import MIN_ID_PREFIX, create_db_engine
from latlab.server.embedded import EmbeddedServer
from latlab.server.tables import Device
from tests.factories import API_KEY, cnn_bytes


@pytest.fixture
def lab(server_on_both: EmbeddedServer) -> Iterator[Client]:
    with Client(server_on_both.url, API_KEY) as client:
        yield client


def test_a_page_is_the_latest_first_with_how_many_there_are_in_all(
    server_on_both: EmbeddedServer, lab: Client
) -> None:
    models = [lab.upload_model(f"m{i}.onnx", cnn_bytes(seed=i)) for i in range(3)]
    jobs = [lab.create_job(m.id, selector={}, config=OnnxRuntimeConfig()) for m in models]

    page = lab.jobs(limit=2, newest_first=True)
    assert [j.id for j in page] == [jobs[2].id, jobs[1].id] and page.total == 3
    oldest = lab.jobs(limit=2)
    assert [j.id for j in oldest] == [jobs[0].id, jobs[1].id] and oldest.total == 3
    assert lab.jobs(limit=10, offset=1).total == 3  # a short page says it without a COUNT
    assert lab.jobs(limit=2, offset=5).total == 3  # an empty page past the end counts
    filtered = lab.jobs(model_id=models[0].id, limit=1)
    assert filtered.total == 1 and filtered[0].id == jobs[0].id

    latest = lab.models(limit=1, newest_first=True)
    assert [m.id for m in latest] == [models[2].id] and latest.total == 3
    none = lab.measurements(limit=5, newest_first=True)
    assert list(none) == [] and none.total == 0

    # the header is in the OpenAPI document, where clients are generated from
    spec = httpx.get(f"{server_on_both.url}/openapi.json").json()
    listed = spec["paths"]["/v1/jobs"]["get"]["responses"]["200"]
    assert "X-Total-Count" in listed["headers"]


def test_an_id_is_taken_by_a_unique_prefix(lab: Client) -> None:
    model = lab.upload_model("m.onnx", cnn_bytes())
    job = lab.create_job(model.id, selector={}, config=OnnxRuntimeConfig())

    assert lab.model(model.id[:12]).id == model.id
    assert lab.job(job.id[:MIN_ID_PREFIX]).id == job.id
    assert lab.cancel_job(job.id[:10]).state == JobState.cancelled

    for unknown in (job.id[: MIN_ID_PREFIX - 1], "zzzzzzzz", "f" * 31 + "x"):
        with pytest.raises(ApiError) as refused:
            lab.job(unknown)
        assert refused.value.status == 404, unknown


def test_a_prefix_two_ids_share_is_refused_with_what_to_do(
    server_on_both: EmbeddedServer, lab: Client, db_url: str
) -> None:
    now = datetime.now(UTC)
    engine = create_db_engine(db_url)
    with engine.begin() as connection:
        connection.execute(
            insert(Device),
            [
                {
                    "id": f"abcdef{i:026d}",
                    "name": f"twin-{i}",
                    "token_hash": f"{i:064d}",
                    "descriptor": {"runtimes": []},
                    "source": "imported",
                    "created_at": now,
                    "last_seen_at": now,
                }
                for i in (1, 2)
            ],
        )
    engine.dispose()
    with pytest.raises(ApiError) as shared:
        lab.device("abcdef")
    assert shared.value.status == 422 and "give more of the id" in shared.value.message
    assert lab.device("abcdef" + "0" * 25 + "2").name == "twin-2"  # the whole id
