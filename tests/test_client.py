"""The SDK's own behaviour: prediction lists longer than one call takes are batched (over a
fake transport, ``httpx.MockTransport``), and the server still refuses one call over its limit."""

from __future__ import annotations

import json
from typing import Any

import httpx

from latlab.client import Client
from latlab.schemas import MAX_PREDICT_ITEMS
from latlab.server.embedded import EmbeddedServer
from tests.factories import API_KEY

#: The fake server's devices: name -> id (it resolves either, as the real one does).
DEVICES = {"pixel": "1d" * 16, "board": "2d" * 16}


def fake_server(calls: list[tuple[str, dict[str, Any]]]) -> httpx.MockTransport:
    """Answers /v1/predict and /v1/predict/devices; each call not pinned to a version is
    answered by a new one (as if a predictor were trained meanwhile)."""

    def answer(device: str, body: dict[str, Any]) -> dict[str, Any]:
        items = body.get("archs") or body.get("model_ids") or []
        assert len(items) <= MAX_PREDICT_ITEMS, "one call over the server's limit"
        return {
            "device_id": DEVICES.get(device, device),
            "predictor": "gcn",
            "version": body.get("version") or f"v{len(calls)}",
            "predictions": [{"item": str(i), "latency_ms": 1.0} for i in items],
        }

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        calls.append((request.url.path, body))
        if request.url.path == "/v1/predict":
            return httpx.Response(200, json=answer(body["device_id"], body))
        assert request.url.path == "/v1/predict/devices"
        return httpx.Response(200, json={"results": [answer(d, body) for d in body["device_ids"]]})

    return httpx.MockTransport(handler)


def test_a_long_arch_list_is_predicted_in_batches_by_one_version_in_order() -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    archs = list(range(2 * MAX_PREDICT_ITEMS + 5))
    with Client("http://lab", "key", transport=fake_server(calls)) as client:
        out = client.predict("pixel", space="nb201", archs=archs)
    assert [len(body["archs"]) for _, body in calls] == [MAX_PREDICT_ITEMS, MAX_PREDICT_ITEMS, 5]
    assert "version" not in calls[0][1] and calls[0][1]["device_id"] == "pixel"
    # the later batches: the device the first answer resolved, by the version that answered it
    assert all(body["device_id"] == DEVICES["pixel"] for _, body in calls[1:])
    assert all(body["version"] == "v1" for _, body in calls[1:])
    assert out.version == "v1" and out.device_id == DEVICES["pixel"]
    assert [p.item for p in out.predictions] == [str(a) for a in archs]


def test_a_short_list_is_one_call_and_model_ids_are_batched_too() -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    with Client("http://lab", "key", transport=fake_server(calls)) as client:
        assert len(client.predict("pixel", space="nb201", archs=[1, 2]).predictions) == 2
        assert len(calls) == 1 and "version" not in calls[0][1]
        models = [f"{i:064x}" for i in range(MAX_PREDICT_ITEMS + 1)]
        out = client.predict("pixel", model_ids=models)
    assert [len(body["model_ids"]) for _, body in calls[1:]] == [MAX_PREDICT_ITEMS, 1]
    assert [p.item for p in out.predictions] == models


def test_several_devices_get_every_batch_each_by_its_first_version() -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    archs = [str(i) for i in range(MAX_PREDICT_ITEMS + 3)]
    with Client("http://lab", "key", transport=fake_server(calls)) as client:
        answers = client.predict_devices(["board", "pixel"], space="nb201", archs=archs)
    assert [a.device_id for a in answers] == [DEVICES["board"], DEVICES["pixel"]]
    assert all([p.item for p in a.predictions] == archs for a in answers)
    first_path, first = calls[0]
    assert first_path == "/v1/predict/devices" and len(first["archs"]) == MAX_PREDICT_ITEMS
    assert [
        (path, body["device_id"], body["version"], len(body["archs"])) for path, body in calls[1:]
    ] == [
        ("/v1/predict", DEVICES["board"], "v1", 3),
        ("/v1/predict", DEVICES["pixel"], "v1", 3),
    ]


def test_the_server_still_refuses_one_call_over_its_limit(
    live_server: EmbeddedServer, client: Client
) -> None:
    csv = b"space,arch,device,latency_ms\nnb201,1,d,1\n"
    [device_id] = client.import_dataset([("d.csv", csv)], "d").device_ids
    body = {"device_id": device_id, "space": "nb201", "archs": list(range(MAX_PREDICT_ITEMS + 1))}
    answer = httpx.post(
        f"{live_server.url}/v1/predict", json=body, headers={"Authorization": f"Bearer {API_KEY}"}
    )
    assert answer.status_code == 413
    assert f"at most {MAX_PREDICT_ITEMS}" in answer.json()["error"]["message"]
