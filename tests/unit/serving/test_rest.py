"""The OIP v2 REST app over a real data plane, in process (httpx's ASGI transport).

Every test runs twice: against the app alone, and with :class:`InferLane` in front of it
as the service has it (inference taken by the lane, everything else passed through).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from vigie.config import Settings
from vigie.errors import ErrorCode, VigieError
from vigie.registry import Registry
from vigie.serving.dataplane import ServingDataPlane
from vigie.serving.rest import InferLane, RestContext, create_app, infer_path_params

from .tiny import MODEL, promote, register_tiny, sync

TOKEN = "good-key"


def check(token: str | None, role: str, protocol: str) -> str:
    """A stand-in key check with the Authenticator.check signature."""
    if token is None:
        raise VigieError(ErrorCode.UNAUTHENTICATED, "an API key is required")
    if token != TOKEN:
        raise VigieError(ErrorCode.FORBIDDEN, "this key may not predict")
    return "key_good"


@pytest.fixture
def settings(tmp_path: Path, make_settings: Callable[..., Settings]) -> Settings:
    settings = make_settings(
        tmp_path / "home", None, device="cpu", max_request_rows=8, max_string_length=4
    )
    registry = Registry(settings)
    register_tiny(registry, tmp_path / "v1", 1000.0)
    promote(registry, "1", "production")
    return settings


def body(carrier: Any = None, distance: Any = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": "r-1",
        "inputs": [
            {
                "name": "carrier",
                "datatype": "BYTES",
                "shape": [2, 1],
                "data": carrier or ["AA", "ZZ"],
            },
            {"name": "distance", "datatype": "FP32", "shape": [2], "data": distance or [1, None]},
        ],
    } | extra


FRONT = {"lane": False}


@pytest.fixture(autouse=True, params=["app alone", "lane in front"])
def front(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(FRONT, "lane", request.param == "lane in front")


async def serve(settings: Settings, calls: Callable[[httpx.AsyncClient], Any]) -> Any:
    plane = ServingDataPlane(settings)
    await plane.start()

    def context() -> RestContext:
        return RestContext(plane, settings, check)

    app: Any = create_app(context)
    if FRONT["lane"]:
        app = InferLane(app, context=context)
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t", headers=headers
        ) as c:
            return await calls(c)
    finally:
        await plane.stop()


@sync
async def test_metadata_health_and_json_inference(settings: Settings) -> None:
    async def calls(c: httpx.AsyncClient) -> None:
        assert (await c.get("/v2/health/live")).json() == {"live": True}
        assert (await c.get("/v2/health/ready")).status_code == 200
        assert (await c.get("/v2")).json()["name"] == "vigie"
        metadata = (await c.get(f"/v2/models/{MODEL}")).json()
        assert metadata["inputs"][0] == {"name": "carrier", "datatype": "BYTES", "shape": [-1, 1]}
        assert (await c.get(f"/v2/models/{MODEL}/versions/1/ready")).status_code == 200
        answer = await c.post(f"/v2/models/{MODEL}/infer", json=body())
        assert answer.status_code == 200, answer.text
        data = answer.json()
        assert (data["model_name"], data["model_version"], data["id"]) == (MODEL, "1", "r-1")
        (output,) = data["outputs"]
        assert output["name"] == "probability" and output["shape"] == [2]
        assert output["data"][0] == 1002.0 and output["data"][1] is None  # NaN in, NaN out
        no_id = (await c.post(f"/v2/models/{MODEL}/versions/1/infer", json=body(id=None))).json()
        assert len(no_id["id"]) == 32

    await serve(settings, calls)


@sync
async def test_binary_tensor_data_in_and_out(settings: Settings) -> None:
    strings = b"".join(struct.pack("<I", len(s)) + s for s in (b"UA", b"AA"))
    numbers = np.asarray([5.0, 6.0], dtype="<f4").tobytes()
    header = {
        "inputs": [
            {
                "name": "carrier",
                "datatype": "BYTES",
                "shape": [2, 1],
                "parameters": {"binary_data_size": len(strings)},
            },
            {
                "name": "distance",
                "datatype": "FP32",
                "shape": [2, 1],
                "parameters": {"binary_data_size": len(numbers)},
            },
        ],
        "parameters": {"binary_data_output": True},
    }
    raw = json.dumps(header).encode()

    async def calls(c: httpx.AsyncClient) -> None:
        answer = await c.post(
            f"/v2/models/{MODEL}/infer",
            content=raw + strings + numbers,
            headers={"Inference-Header-Content-Length": str(len(raw))},
        )
        assert answer.status_code == 200, answer.text
        length = int(answer.headers["Inference-Header-Content-Length"])
        document = json.loads(answer.content[:length])
        assert document["outputs"][0]["parameters"] == {"binary_data_size": 8}
        assert np.frombuffer(answer.content[length:], "<f4").tolist() == [1007.0, 1007.0]

    await serve(settings, calls)


BAD = [
    ("wrong shape", body(distance=[1, 2, 3]), 400, "distance"),
    (
        "wrong datatype",
        {**body(), "inputs": [body()["inputs"][0], {**body()["inputs"][1], "datatype": "BYTES"}]},
        400,
        "distance",
    ),
    ("missing input", {**body(), "inputs": body()["inputs"][:1]}, 400, "distance"),
    (
        "extra input",
        {
            **body(),
            "inputs": [
                *body()["inputs"],
                {"name": "dep_delay", "datatype": "FP32", "shape": [2], "data": [1, 2]},
            ],
        },
        400,
        "dep_delay",
    ),
    (
        "infinity",
        json.dumps(body(distance=[1, 7])).replace("7]", "1e999]").encode(),
        400,
        "distance",
    ),
    (
        "Infinity literal",
        json.dumps(body(distance=[1, 7])).replace("7]", "Infinity]").encode(),
        400,
        "distance",
    ),
    (
        "empty batch",
        {**body(), "inputs": [{**t, "shape": [0], "data": []} for t in body()["inputs"]]},
        400,
        "empty",
    ),
    (
        "above the row limit",
        {
            **body(),
            "inputs": [{**t, "shape": [9], "data": [t["data"][0]] * 9} for t in body()["inputs"]],
        },
        400,
        "limit of 8",
    ),
    ("string too long", body(carrier=["AA", "LONGER"]), 400, "carrier"),
    ("unknown output", body(outputs=[{"name": "nope"}]), 400, "nope"),
    ("no inputs", {"inputs": []}, 400, "inputs"),
    (
        "shape not a list",
        {**body(), "inputs": [{**body()["inputs"][0], "shape": "2"}, body()["inputs"][1]]},
        400,
        "carrier",
    ),
]


@sync
async def test_bad_requests_get_4xx_naming_the_problem(settings: Settings) -> None:
    async def calls(c: httpx.AsyncClient) -> None:
        for case, payload, status, words in BAD:
            url = f"/v2/models/{MODEL}/infer"
            if isinstance(payload, bytes):
                answer = await c.post(url, content=payload)
            else:
                answer = await c.post(url, json=payload)
            assert answer.status_code == status, (case, answer.text)
            assert words in answer.json()["error"], (case, answer.text)
        for path, status in (
            ("/v2/models/nope/infer", 404),
            (f"/v2/models/{MODEL}/versions/7/infer", 404),
        ):
            assert (await c.post(path, json=body())).status_code == status
        assert (await c.post(f"/v2/models/{MODEL}/infer", content=b"{bad")).status_code == 400
        huge = b'{"inputs": [' + b" " * 9_000_000 + b"]}"
        answer = await c.post(f"/v2/models/{MODEL}/infer", content=huge)
        assert answer.status_code == 400 and "limit" in answer.json()["error"]
        assert (await c.post(f"/v2/models/{MODEL}/infer", json=body())).status_code == 200

    await serve(settings, calls)


@sync
async def test_the_api_key_hook_guards_everything_but_health(settings: Settings) -> None:
    async def calls(c: httpx.AsyncClient) -> None:
        anonymous = {"Authorization": ""}
        assert (await c.get("/v2/health/ready", headers=anonymous)).status_code == 200
        refused = await c.post(f"/v2/models/{MODEL}/infer", json=body(), headers=anonymous)
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
        wrong = {"Authorization": "Bearer other"}
        assert (await c.get(f"/v2/models/{MODEL}", headers=wrong)).status_code == 403

    await serve(settings, calls)


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v2/models/m/infer", {"name": "m"}),
        ("/v2/models/m/versions/3/infer", {"name": "m", "version": "3"}),
        ("/v2/models/m", None),
        ("/v2/models/m/ready", None),
        ("/v2/models//infer", None),
        ("/v2/models/m/infer/", None),
        ("/v2/models/m/versions//infer", None),
        ("/v2/models/m/other/3/infer", None),
        ("/v2/models/a/b/infer", None),
        ("/v2/models/m/versions/3/x/infer", None),
        ("/predict", None),
    ],
)
def test_the_lane_takes_exactly_the_infer_routes(path: str, params: Any) -> None:
    assert infer_path_params(path) == params


@sync
async def test_the_lane_passes_everything_else_on(settings: Settings) -> None:
    seen: list[str] = []

    async def rest_of_server(scope: Any, receive: Any, send: Any) -> None:
        seen.append(f"{scope['method']} {scope['path']}")
        await send({"type": "http.response.start", "status": 418, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    plane = ServingDataPlane(settings)
    await plane.start()
    lane = InferLane(rest_of_server, context=lambda: RestContext(plane, settings, check))
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=lane), base_url="http://t", headers=headers
        ) as c:
            assert (await c.post(f"/v2/models/{MODEL}/infer", json=body())).status_code == 200
            assert (await c.get(f"/v2/models/{MODEL}/infer")).status_code == 418
            assert (await c.post(f"/v2/models/{MODEL}/infer/", json=body())).status_code == 418
            assert (await c.get(f"/v2/models/{MODEL}")).status_code == 418
    finally:
        await plane.stop()
    assert seen == [
        f"GET /v2/models/{MODEL}/infer",
        f"POST /v2/models/{MODEL}/infer/",
        f"GET /v2/models/{MODEL}",
    ]
