"""Bad input on OIP REST against the real service: 400/404 naming the input, never a 500."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from .running import MAX_REQUEST_ROWS, Server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "flight_delay"


@pytest.fixture(scope="module")
def valid(server: Server) -> dict[str, Any]:
    """A valid two-row request built from the served model's metadata."""
    metadata = httpx.get(f"{server.rest}/v2/models/{MODEL}", headers=server.headers).json()
    return {
        "inputs": [
            {
                "name": spec["name"],
                "datatype": spec["datatype"],
                "shape": [2, 1],
                "data": ["AA", "ZZ"] if spec["datatype"] == "BYTES" else [1.0, None],
            }
            for spec in metadata["inputs"]
        ]
    }


def changed(valid: dict[str, Any], name: str, **fields: Any) -> dict[str, Any]:
    inputs = [dict(t, **fields) if t["name"] == name else t for t in valid["inputs"]]
    return {**valid, "inputs": inputs}


def resized(valid: dict[str, Any], rows: int) -> dict[str, Any]:
    return {
        "inputs": [dict(t, shape=[rows, 1], data=[t["data"][0]] * rows) for t in valid["inputs"]]
    }


def cases(valid: dict[str, Any]) -> list[tuple[str, str, bytes, int, str]]:
    """(case, path, body, status, word the error must contain)."""
    infer = f"/v2/models/{MODEL}/infer"

    def raw(document: dict[str, Any]) -> bytes:
        return json.dumps(document).encode()

    extra = {"name": "dep_delay", "datatype": "FP32", "shape": [2, 1], "data": [1.0, 2.0]}
    return [
        ("wrong shape", infer, raw(changed(valid, "distance", shape=[1, 2])), 400, "distance"),
        ("wrong datatype", infer, raw(changed(valid, "carrier", datatype="FP32")), 400, "carrier"),
        ("missing input", infer, raw({"inputs": valid["inputs"][1:]}), 400, "carrier"),
        ("extra input", infer, raw({"inputs": [*valid["inputs"], extra]}), 400, "dep_delay"),
        (
            "infinity",
            infer,
            raw(changed(valid, "distance", data=[1.0, 7.0])).replace(b"7.0]", b"Infinity]"),
            400,
            "distance",
        ),
        ("empty batch", infer, raw(resized(valid, 0)), 400, "empty"),
        ("above limit", infer, raw(resized(valid, MAX_REQUEST_ROWS + 1)), 400, "limit"),
        ("body too big", infer, b'{"inputs": [' + b" " * (9 << 20) + b"]}", 400, "limit"),
        ("malformed JSON", infer, b'{"inputs": [', 400, "JSON"),
        (
            "string too long",
            infer,
            raw(changed(valid, "dest", data=["X" * 65, "JFK"])),
            400,
            "dest",
        ),
        ("unknown model", "/v2/models/no_such_model/infer", raw(valid), 404, "no_such_model"),
        ("unknown version", f"/v2/models/{MODEL}/versions/999/infer", raw(valid), 404, "999"),
        ("bad version", f"/v2/models/{MODEL}/versions/abc/infer", raw(valid), 404, "abc"),
    ]


def test_each_bad_request_is_refused_and_the_server_keeps_answering(
    server: Server, valid: dict[str, Any]
) -> None:
    with httpx.Client(base_url=server.rest, headers=server.headers, timeout=30) as client:
        for case, path, body, status, word in cases(valid):
            answer = client.post(path, content=body)
            assert answer.status_code == status, (case, answer.status_code, answer.text[:300])
            assert word in answer.json()["error"], (case, answer.text[:300])
            assert client.post(f"/v2/models/{MODEL}/infer", json=valid).status_code == 200, case
    assert server.process.poll() is None
