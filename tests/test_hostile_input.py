"""Hostile input: each answer a 4xx with a message, nothing stored in the database or the blob
store — oversized bodies (declared or streamed without a length), models that would make an
agent allocate absurd tensors, graph bombs, NUL characters, and unicode or SQL-looking names
(stored verbatim, harming nothing) on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
from onnx import TensorProto, helper

from latlab.agent.errors import RunnerError
from latlab.agent.inputs import make_inputs
from latlab.client import Client
from latlab.errors import ModelInvalid
from latlab.export.tflite import to_tflite
from latlab.schemas import DatasetFormat
from latlab.server.embedded import EmbeddedServer
from latlab.server.uploads import safe_filename
from latlab.spaces.nb201 import Nb201
from latlab.tflite_summary import summarize_tflite
from tests.factories import API_KEY, ENROLL_KEY, cnn_bytes, cpu_descriptor, make_settings
from tests.test_api_models import assert_nothing_stored, upload_bytes

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def chunks(total: int, size: int = 1 << 16) -> Iterator[bytes]:
    """A body sent without a Content-Length (chunked transfer encoding)."""
    sent = 0
    while sent < total:
        yield b" " * min(size, total - sent)
        sent += size


@pytest.fixture
def small_limits(tmp_path: Path, sqlite_url: str) -> Iterator[EmbeddedServer]:
    settings = make_settings(
        tmp_path,
        sqlite_url,
        max_json_bytes=64 * 1024,
        max_model_bytes=4 * 1024**2,
        max_import_bytes=256 * 1024,
        max_tensor_bytes=64 * 1024**2,
        max_model_nodes=500,
    )
    with EmbeddedServer(settings) as server:
        yield server


def test_an_oversized_json_body_is_refused_before_it_is_read(
    small_limits: EmbeddedServer,
) -> None:
    with (
        httpx.Client(base_url=small_limits.url, headers=AUTH) as h,
        Client(small_limits.url, API_KEY) as client,
    ):
        declared = h.post(
            "/v1/jobs",
            content=b"{" + b" " * (128 * 1024) + b"}",
            headers={"Content-Type": "application/json"},
        )
        streamed = h.post(
            "/v1/jobs",
            content=chunks(10 * 1024**2),
            headers={"Content-Type": "application/json"},
        )
        assert client.jobs() == []
    for answer in (declared, streamed):
        assert answer.status_code == 413, answer.text
        assert "exceeds the limit of 65536 bytes" in answer.json()["error"]["message"]


def test_an_upload_streamed_without_a_length_is_cut_off_at_the_limit(
    small_limits: EmbeddedServer,
) -> None:
    boundary = "b0undary"

    def body() -> Iterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="m.onnx"'
            "\r\nContent-Type: application/octet-stream\r\n\r\n"
        ).encode()
        yield from chunks(50 * 1024**2)  # 50 MiB against a 4 MiB limit
        yield f"\r\n--{boundary}--\r\n".encode()

    with httpx.Client(base_url=small_limits.url, headers=AUTH) as h:
        answer = h.post(
            "/v1/models",
            content=body(),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
    assert answer.status_code == 413 and "exceeds the limit" in answer.json()["error"]["message"]
    with Client(small_limits.url, API_KEY) as client:
        assert_nothing_stored(client, small_limits.settings)


def absurd_onnx() -> bytes:
    """A valid two-node model whose input would take 4 TB."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Neg", ["y"], ["z"])],
        "absurd",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1000, 1000, 1000, 1000])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 1000, 1000, 1000, 1000])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def constant_of_shape_bomb() -> bytes:
    """A tiny model that would materialise a 1e12-element tensor from a 2-element constant."""
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [1_000_000, 1_000_000])
    graph = helper.make_graph(
        [
            helper.make_node("ConstantOfShape", ["shape"], ["big"]),
            helper.make_node("ReduceSum", ["big"], ["z"], keepdims=0),
        ],
        "bomb",
        [],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [])],
        initializer=[shape],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def too_many_nodes(n: int) -> bytes:
    nodes = [helper.make_node("Relu", [f"t{i}"], [f"t{i + 1}"]) for i in range(n)]
    graph = helper.make_graph(
        nodes,
        "long",
        [helper.make_tensor_value_info("t0", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info(f"t{n}", TensorProto.FLOAT, [1, 4])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def nested_subgraphs(depth: int) -> bytes:
    """A ModelProto whose graph holds If-nodes nested ``depth`` deep in their then-branches,
    written field by field (protobuf's own builder stops at its recursion limit)."""
    graph = _field(1, _field(4, b"Identity"))  # GraphProto.node: one NodeProto(op_type)
    for _ in range(depth):
        attribute = _field(1, b"then_branch") + _field(6, graph) + _varint(20 << 3) + _varint(5)
        graph = _field(1, _field(4, b"If") + _field(5, attribute))
    opset = _varint(2 << 3) + _varint(17)
    return _varint(1 << 3) + _varint(8) + _field(7, graph) + _field(8, opset)


def absurd_tflite() -> bytes:
    """latlab's own NB201 TFLite export with its input tensor's shape rewritten to 4 TB."""
    from ai_edge_litert import schema_py_generated as schema

    space = Nb201()
    data = to_tflite(space.graph(space.parse(0)), seed=0)
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(data, 0))
    subgraph = model.subgraphs[0]
    subgraph.tensors[subgraph.inputs[0]].shape = np.array([1, 10**6, 10**6, 1], dtype=np.int32)
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@pytest.mark.parametrize(
    ("make", "status", "message"),
    [
        (absurd_onnx, 422, "would take 4,000,000,000,000 bytes"),
        (constant_of_shape_bomb, 422, "would take 4,000,000,000,000 bytes"),
        (lambda: too_many_nodes(501), 422, "501 nodes; the limit is 500"),
        (lambda: nested_subgraphs(200), 422, "does not parse"),
        (absurd_tflite, 422, "would take 4,000,000,000,000 bytes"),
    ],
    ids=["4TB-input", "constant-of-shape", "too-many-nodes", "nested-subgraphs", "4TB-tflite"],
)
def test_a_model_an_agent_could_not_hold_is_refused_at_upload(
    small_limits: EmbeddedServer, make: object, status: int, message: str
) -> None:
    with Client(small_limits.url, API_KEY) as client:
        err = upload_bytes(client, make())  # type: ignore[operator]
        assert err.status == status and message in err.message, err.message
        assert_nothing_stored(client, small_limits.settings)


def test_nul_characters_are_refused_everywhere_a_database_would_choke(
    server_on_both: EmbeddedServer,
) -> None:
    url = server_on_both.url
    with httpx.Client(base_url=url, headers=AUTH) as h, Client(url, API_KEY) as client:
        register = h.post(
            "/v1/devices/register",
            json={
                "name": "phone\x00",
                "descriptor": cpu_descriptor().model_dump(),
            },
            headers={"Authorization": f"Bearer {ENROLL_KEY}"},
        )
        label = h.post(
            "/v1/devices/register",
            json={
                "name": "phone",
                "descriptor": cpu_descriptor(labels={"rack": "a\x00b"}).model_dump(),
            },
            headers={"Authorization": f"Bearer {ENROLL_KEY}"},
        )
        path = h.get("/v1/jobs/abc%00def")
        query = h.get("/v1/measurements", params={"model": "a\x00"})
        form = h.post(
            "/v1/datasets/import",
            data={"name": "x\x00y"},
            files={"files": ("a.csv", b"space,arch,device,latency_ms\nnb201,0,d,1.0\n")},
        )
        assert client.devices() == [] and client.datasets() == []
    assert register.status_code == label.status_code == form.status_code == 422
    assert "NUL" in register.json()["error"]["message"]
    assert path.status_code == query.status_code == 400


SQLISH = "Robert'); DROP TABLE devices;-- 模型 🚀 ' OR 1=1 --"


def test_unicode_and_sql_looking_names_are_stored_verbatim(
    server_on_both: EmbeddedServer, tmp_path: Path
) -> None:
    url = server_on_both.url
    with httpx.Client(base_url=url) as h, Client(url, API_KEY) as client:
        registered = h.post(
            "/v1/devices/register",
            json={
                "name": SQLISH,
                "descriptor": cpu_descriptor(labels={"rack": SQLISH}).model_dump(),
            },
            headers={"Authorization": f"Bearer {ENROLL_KEY}"},
        )
        assert registered.status_code == 201, registered.text
        path = tmp_path / "m.onnx"
        path.write_bytes(cnn_bytes())
        model = h.post(
            "/v1/models",
            files={"file": (f"../../{SQLISH}\r\n.onnx", path.read_bytes())},
            headers=AUTH,
        )
        assert model.status_code == 201, model.text
        csv = f"space,arch,device,latency_ms\nnb201,0,{SQLISH},1.5\n".encode()
        imported = client.import_dataset([("pub.csv", csv)], SQLISH, note=SQLISH)
        devices = client.devices()
        [device] = [d for d in devices if d.source == "agent"]
        selected = client.create_job(model.json()["id"], selector={"labels.rack": SQLISH})
        exported = client.export_dataset(imported.id, DatasetFormat.csv).decode()
        assert sorted(d.name for d in devices) == [SQLISH, SQLISH]  # the imported one too
    assert device.name == SQLISH and device.descriptor.labels == {"rack": SQLISH}
    filename = model.json()["filename"]  # the path is gone; httpx %-encodes the CR LF
    assert filename.startswith(SQLISH) and filename.endswith(".onnx") and "/" not in filename
    assert imported.name == SQLISH and imported.progress.done == 1
    assert selected.selector == {"labels.rack": SQLISH}
    assert SQLISH in exported
    assert json.dumps(SQLISH)  # the names survived the round trip through JSON unchanged


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\models\\net.onnx", "net.onnx"),
        ("a\r\nb\x00c\x1b[31m.onnx", "abc[31m.onnx"),
        ("..", "default"),
        ("", "default"),
        (None, "default"),
        ("模型 🚀.onnx", "模型 🚀.onnx"),
        ("x" * 300, "x" * 255),
    ],
)
def test_an_uploaded_file_name_is_stored_without_paths_or_control_characters(
    sent: str | None, stored: str
) -> None:
    assert safe_filename(sent, "default") == stored


def test_the_agent_refuses_to_generate_an_input_it_cannot_hold() -> None:
    spec = SimpleNamespace(name="x", type="tensor(float)", shape=[1, 10**6, 10**6])
    with pytest.raises(RunnerError, match="would take 4,000,000,000,000 bytes"):
        make_inputs([spec], seed=0)


def test_a_tflite_model_over_the_node_limit_is_refused_before_its_operators_are_read() -> None:
    space = Nb201()
    data = to_tflite(space.graph(space.parse(0)), seed=0)
    n_ops = summarize_tflite(data).n_nodes
    with pytest.raises(ModelInvalid, match=f"has {n_ops} nodes; the limit is {n_ops - 1}"):
        summarize_tflite(data, max_nodes=n_ops - 1)
