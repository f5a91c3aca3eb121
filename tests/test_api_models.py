"""Model upload: validated, stored once by sha256, summarised; bad files are refused whole."""

from __future__ import annotations

from pathlib import Path

import httpx
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from latlab.client import Client
from latlab.errors import ApiError
from latlab.server.config import Settings
from latlab.server.embedded import EmbeddedServer
from tests.factories import API_KEY, cnn_bytes, make_settings


def stored_blobs(settings: Settings) -> list[Path]:
    root = settings.resolved_blob_dir
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def assert_nothing_stored(client: Client, settings: Settings) -> None:
    assert client.models() == []
    assert stored_blobs(settings) == []


def upload_bytes(client: Client, data: bytes, name: str = "m.onnx") -> ApiError:
    with pytest.raises(ApiError) as err:
        client.upload_model(name, data=data)
    return err.value


def test_upload_returns_the_sha256_id_and_a_summary(client: Client, tmp_path: Path) -> None:
    path = tmp_path / "cnn.onnx"
    path.write_bytes(cnn_bytes())
    model = client.upload_model(path)
    import hashlib

    assert model.id == hashlib.sha256(path.read_bytes()).hexdigest()
    assert model.filename == "cnn.onnx"
    assert model.summary.op_counts["Conv"] == 2
    assert model.summary.inputs[0].shape == [1, 3, 16, 16]
    # conv1 8x3x3x3 over 16x16, conv2 8x8x3x3 over 8x8, fc 10x8
    assert model.summary.macs == 8 * 16 * 16 * 27 + 8 * 8 * 8 * 72 + 10 * 8
    assert model.summary.flops == 2 * model.summary.macs
    assert client.model(model.id) == model


def test_uploading_the_same_bytes_twice_stores_one_model(
    client: Client, live_server: EmbeddedServer
) -> None:
    data = cnn_bytes()
    first = client.upload_model("a.onnx", data=data)
    with httpx.Client(
        base_url=live_server.url, headers={"Authorization": f"Bearer {API_KEY}"}
    ) as h:
        again = h.post("/v1/models", files={"file": ("b.onnx", data)})
    assert again.status_code == 200
    assert again.json()["id"] == first.id
    assert len(client.models()) == 1
    assert len(stored_blobs(live_server.settings)) == 1


def test_download_returns_the_uploaded_bytes(client: Client, live_server: EmbeddedServer) -> None:
    data = cnn_bytes(seed=3)
    model = client.upload_model("m.onnx", data=data)
    with httpx.Client(
        base_url=live_server.url, headers={"Authorization": f"Bearer {API_KEY}"}
    ) as h:
        got = h.get(f"/v1/models/{model.id}/content")
    assert got.status_code == 200
    assert got.content == data


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(cnn_bytes()[: len(cnn_bytes()) // 2], id="truncated-onnx"),
        pytest.param(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, id="png"),
        pytest.param(b"hello, this is a text file, not a model\n" * 10, id="text"),
        pytest.param(bytes(range(256)) * 16, id="garbage"),
    ],
)
def test_a_file_that_is_not_a_valid_onnx_model_is_refused(
    client: Client, live_server: EmbeddedServer, data: bytes
) -> None:
    err = upload_bytes(client, data)
    assert err.status == 422
    assert "ONNX" in err.message
    assert_nothing_stored(client, live_server.settings)


def test_an_empty_upload_is_refused(client: Client, live_server: EmbeddedServer) -> None:
    err = upload_bytes(client, b"")
    assert err.status == 400
    assert_nothing_stored(client, live_server.settings)


def test_a_model_with_an_inconsistent_graph_is_refused(
    client: Client, live_server: EmbeddedServer
) -> None:
    node = helper.make_node("Add", ["x", "y"], ["z"])
    graph = helper.make_graph(
        [node],
        "bad",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3]),
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4]),
        ],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    err = upload_bytes(client, model.SerializeToString())
    assert err.status == 422
    assert_nothing_stored(client, live_server.settings)


def test_a_model_with_external_data_is_refused(client: Client, live_server: EmbeddedServer) -> None:
    model = onnx.load_model_from_string(cnn_bytes())
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "../../etc/passwd"
    err = upload_bytes(client, model.SerializeToString())
    assert err.status == 422
    assert "external data" in err.message
    assert_nothing_stored(client, live_server.settings)


def test_an_upload_over_the_size_limit_is_refused(tmp_path: Path, sqlite_url: str) -> None:
    settings = make_settings(tmp_path, sqlite_url, max_model_bytes=1000)
    with EmbeddedServer(settings) as server, Client(server.url, API_KEY) as client:
        err = upload_bytes(client, cnn_bytes())
        assert err.status == 413
        assert "limit" in err.message
        assert_nothing_stored(client, settings)


def test_model_calls_need_an_api_key(live_server: EmbeddedServer) -> None:
    with httpx.Client(base_url=live_server.url) as h:
        missing = h.post("/v1/models", files={"file": ("m.onnx", cnn_bytes())})
        wrong = h.get("/v1/models", headers={"Authorization": "Bearer nope"})
    assert missing.status_code == 401
    assert wrong.status_code == 401
    assert "API key" in wrong.json()["error"]["message"]


def test_an_unknown_model_is_not_found(client: Client) -> None:
    with pytest.raises(ApiError) as err:
        client.model("0" * 64)
    assert err.value.status == 404


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(min_size=1, max_size=4096))
def test_random_bytes_are_refused_with_a_4xx_never_a_5xx(
    client: Client, live_server: EmbeddedServer, data: bytes
) -> None:
    err = upload_bytes(client, data)
    assert err.status in (400, 422)
    assert_nothing_stored(client, live_server.settings)
