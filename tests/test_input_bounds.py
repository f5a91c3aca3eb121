"""Hostile input, second round (one class per test, on SQLite and PostgreSQL): nesting without
a bound, integers past a column, readers raising what their callers do not catch, NUL
characters from files, error messages that echo unbounded input, and limits that stopped at the
top graph. Each answer is a 4xx with a message, nothing is stored, and the server answers on."""

from __future__ import annotations

import io
import pickle
import zipfile
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from latlab.client import Client
from latlab.errors import InputRejected, ModelInvalid
from latlab.export.tflite import to_tflite
from latlab.onnx_summary import load_onnx, summarize_onnx
from latlab.server.app import create_app
from latlab.server.embedded import EmbeddedServer
from latlab.spaces.nb201 import Nb201
from latlab.tflite_summary import summarize_tflite
from latlab.untrusted import MAX_DEPTH, check_json_depth, excerpt, loads
from tests.factories import API_KEY, ENROLL_KEY, cpu_descriptor, make_settings
from tests.test_api_jobs import result_for
from tests.test_api_models import assert_nothing_stored, upload_bytes

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def nested(depth: int, leaf: str = "1") -> str:
    return '{"a":' * depth + leaf + "}" * depth


def still_answers(server: EmbeddedServer) -> None:
    assert httpx.get(f"{server.url}/healthz").status_code == 200


# --------------------------------------------------------------------------- 1. nesting


@given(st.integers(min_value=0, max_value=3 * MAX_DEPTH), st.sampled_from(["[", "{"]))
def test_the_depth_check_agrees_with_the_parser(depth: int, opener: str) -> None:
    closer = {"[": "]", "{": "}"}[opener]
    inner = '"}]{[ in a string"'
    text = (opener + ('"k":' if opener == "{" else "")) * depth + inner + closer * depth
    if depth <= MAX_DEPTH:
        check_json_depth(text)
        loads(text)
    else:
        with pytest.raises(InputRejected, match="nested deeper than"):
            check_json_depth(text)


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 950, 100_000])
def test_a_body_nested_past_the_bound_is_a_422_even_without_credentials(
    server_on_both: EmbeddedServer, depth: int
) -> None:
    url = server_on_both.url
    body = '{"name": "x", "descriptor": ' + nested(depth) + "}"
    with httpx.Client(base_url=url) as h, Client(url, API_KEY) as client:
        answers = [
            h.post(
                "/v1/devices/register", content=body, headers={"Content-Type": "application/json"}
            ),
            h.post("/v1/jobs", content=body, headers={"Content-Type": "application/json", **AUTH}),
        ]
        assert client.devices() == [] and client.jobs() == []
    for answer in answers:
        assert answer.status_code == 422, answer.text
        assert f"nested deeper than {MAX_DEPTH} levels" in answer.json()["error"]["message"]
    still_answers(server_on_both)


def test_files_and_form_fields_nested_past_the_bound_are_refused(
    server_on_both: EmbeddedServer,
) -> None:
    url = server_on_both.url
    deep_json = ('{"1,2,3,4,5,6": ' + "[" * 100_000 + "]" * 100_000 + "}").encode()
    with httpx.Client(base_url=url, headers=AUTH) as h, Client(url, API_KEY) as client:
        latbench = h.post(
            "/v1/datasets/import",
            data={"name": "deep"},
            files={"files": ("phone.json", deep_json)},
        )
        params = h.post(
            "/v1/datasets/import",
            data={"name": "deep", "space_params": nested(100)},  # the field holds 1000 chars
            files={"files": ("a.csv", b"space,arch,device,latency_ms\nnb201,0,d,1.0\n")},
        )
        training = h.post(
            "/v1/predictors",
            data={
                "device_id": "d",
                "space": "nb201",
                "runtime": "onnxruntime",
                "training": nested(10_000),
            },
            files={"artifact": ("p.bin", b"x")},
        )
        assert client.datasets() == []
    for answer in (latbench, params, training):
        assert answer.status_code == 422, answer.text
        assert "nested deeper than" in answer.json()["error"]["message"]
    still_answers(server_on_both)


# --------------------------------------------------------------------------- 2. integers


def _integers_without_bounds(schema: Any, defs: dict[str, Any], seen: set[str]) -> list[str]:
    """Integer schemas (in a request) that lack a minimum or a maximum."""
    out: list[str] = []
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref not in seen:
                seen.add(ref)
                stack.append(defs[ref.rsplit("/", 1)[1]])
            if node.get("type") == "integer" and not (
                "maximum" in node or "exclusiveMaximum" in node
            ):
                out.append(str(node))
            stack.extend(v for k, v in node.items() if k != "$ref")
    return out


def test_every_integer_a_request_carries_has_an_upper_bound(tmp_path: Any, sqlite_url: str) -> None:
    document = create_app(make_settings(tmp_path, sqlite_url)).openapi()
    defs = document["components"]["schemas"]
    unbounded: list[str] = []
    for path, operations in document["paths"].items():
        for method, op in operations.items():
            parts = [p.get("schema", {}) for p in op.get("parameters", [])]
            parts += [
                c.get("schema", {}) for c in op.get("requestBody", {}).get("content", {}).values()
            ]
            unbounded += [
                f"{method} {path}: {s}" for s in _integers_without_bounds(parts, defs, set())
            ]
    assert unbounded == []


@pytest.mark.parametrize("value", [2**31, 2**63])
@pytest.mark.parametrize("field", ["threads", "warmup.n", "ops.n"])
def test_a_result_whose_integer_a_column_cannot_hold_is_a_422(
    server_on_both: EmbeddedServer, value: int, field: str
) -> None:
    from tests.factories import cnn_bytes, register

    url = server_on_both.url
    agent, registered = register(url)
    with agent, Client(url, API_KEY) as client:
        model = client.upload_model("m.onnx", data=cnn_bytes())
        client.create_job(model.id, device_id=registered.device_id)
        claim = agent.claim(wait_s=0)
        assert claim is not None
        body = result_for(claim).model_dump(mode="json")
        if field == "threads":
            body["threads"] = value
        elif field == "warmup.n":
            body["warmup"]["n"] = value
        else:
            body["ops"][0]["n"] = value
        answer = agent._http.post(f"/v1/agent/jobs/{claim.job_id}/result", json=body)
        assert answer.status_code == 422, answer.text
        assert client.measurements() == []
    still_answers(server_on_both)


# --------------------------------------------------------------------------- 3.-5. files


def billion_laughs(levels: int = 20) -> bytes:
    value: Any = ["ha" * 5]
    for _ in range(levels):
        value = [value, value]
    return pickle.dumps({(0, 1, 2, 3, 4, 5): value})


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        (
            "wide.csv",
            b"space,arch,device,latency_ms," + b"a" * 200_000 + b"\nnb201,1,d,1,1\n",
            "not a readable CSV header",
        ),
        ("nul.csv", b"space,arch,device,latency_ms\nnb201,1,ph\x00one,1\n", "NUL"),
        ("laughs.pickle", billion_laughs(), "is not a number"),
    ],
)
def test_an_import_a_reader_cannot_take_is_a_short_422(
    server_on_both: EmbeddedServer, name: str, data: bytes, message: str
) -> None:
    url = server_on_both.url
    with httpx.Client(base_url=url, headers=AUTH) as h, Client(url, API_KEY) as client:
        answer = h.post("/v1/datasets/import", data={"name": "x"}, files={"files": (name, data)})
        assert client.datasets() == [] and client.devices() == []
    assert answer.status_code == 422, answer.text[:300]
    assert message in answer.json()["error"]["message"]
    assert len(answer.content) < 1000
    still_answers(server_on_both)


def test_a_nul_inside_an_archive_member_name_is_refused() -> None:
    from latlab.datasets.reader import read_import

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("ph\x01one.csv", b"space,arch,device,latency_ms\nnb201,1,d\x00,1\n")
    with pytest.raises(Exception, match="NUL"):
        read_import([("a.zip", buffer.getvalue())])


def test_a_predictor_artifact_declaring_a_huge_array_is_refused_unread() -> None:
    from latlab.predictors.errors import PredictorError
    from latlab.predictors.model import GcnPredictor

    header = np.lib.format.header_data_from_array_1_0(np.zeros(1, dtype=np.float32))
    header["shape"] = (1 << 40,)
    npy = io.BytesIO()
    np.lib.format.write_array_header_1_0(npy, header)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("w.npy", npy.getvalue() + b"\0" * 16)
    with pytest.raises(PredictorError, match="declares"):
        GcnPredictor.from_payload(buffer.getvalue())


def test_an_excerpt_is_short_whatever_the_value() -> None:
    value: Any = "x"
    for _ in range(200):
        value = [value, value]  # 2^200 leaves: a plain repr would never end
    assert len(excerpt(value)) <= 80
    assert len(excerpt("y" * 10**7)) <= 80


# --------------------------------------------------------------------------- 6. subgraphs


def bomb_in_if_branch(n: int = 1 << 40) -> bytes:
    shape = numpy_helper.from_array(np.array([n], dtype=np.int64), "shape")
    then_body = helper.make_graph(
        [
            helper.make_node("Constant", [], ["s"], value=shape),
            helper.make_node("ConstantOfShape", ["s"], ["big"]),
            helper.make_node("ReduceSum", ["big"], ["out"], keepdims=0),
        ],
        "then",
        [],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [])],
    )
    zero = numpy_helper.from_array(np.array(0, dtype=np.float32))
    else_body = helper.make_graph(
        [helper.make_node("Constant", [], ["out2"], value=zero)],
        "else",
        [],
        [helper.make_tensor_value_info("out2", TensorProto.FLOAT, [])],
    )
    graph = helper.make_graph(
        [helper.make_node("If", ["c"], ["y"], then_branch=then_body, else_branch=else_body)],
        "g",
        [helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model.SerializeToString()


def test_the_tensor_limit_reaches_into_subgraphs(server_on_both: EmbeddedServer) -> None:
    summary = summarize_onnx(load_onnx(bomb_in_if_branch()))
    assert summary.largest_tensor == "big" and summary.largest_tensor_bytes == 4 << 40
    with Client(server_on_both.url, API_KEY) as client:
        err = upload_bytes(client, bomb_in_if_branch())
        assert err.status == 422 and "big" in err.message, err.message
        assert_nothing_stored(client, server_on_both.settings)


def _patched_tflite(patch: str) -> bytes:
    """A real exported TFLite file with one index pointed past the end."""
    from ai_edge_litert import schema_py_generated as schema

    space = Nb201()
    data = to_tflite(space.graph(space.parse(1234)))
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(data, 0))
    graph = model.subgraphs[0]
    if patch == "tensor":
        graph.operators[0].inputs = [len(graph.tensors) + 5, *graph.operators[0].inputs[1:]]
    elif patch == "buffer":
        graph.tensors[0].buffer = len(model.buffers) + 5
    else:
        model.buffers[1].offset, model.buffers[1].size = 10**9, 64
        model.buffers[1].data = None
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@pytest.mark.parametrize(
    ("patch", "message"),
    [("tensor", "names tensor"), ("buffer", "names buffer"), ("offset", "points at bytes")],
)
def test_a_tflite_index_past_the_end_is_refused(patch: str, message: str) -> None:
    with pytest.raises(ModelInvalid, match=message):
        summarize_tflite(_patched_tflite(patch))


def test_register_still_works_after_the_bounds(server_on_both: EmbeddedServer) -> None:
    """The bounds leave a real registration alone (a descriptor nests 3 deep)."""
    with httpx.Client(base_url=server_on_both.url) as h:
        answer = h.post(
            "/v1/devices/register",
            json={"name": "ok", "descriptor": cpu_descriptor().model_dump()},
            headers={"Authorization": f"Bearer {ENROLL_KEY}"},
        )
    assert answer.status_code == 201, answer.text
