"""The tools' OIP client: what it sends, and how it names each failure.

REST is checked against an in-process httpx transport that answers as the service does;
the real service is the integration tests' (``tests/integration/monitoring``).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest

from vigie.config import Settings
from vigie.errors import ErrorCode, VigieError
from vigie.serving.client import GrpcClient, RestClient, _raw_strings, local_predict_key

COLUMNS = {
    "carrier": np.array(["UA", None], dtype=object),
    "distance": np.array([719.0, np.nan], dtype=np.float32),
}


def client(answer: Callable[[httpx.Request], httpx.Response], seen: list) -> RestClient:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(request)

    return RestClient("http://svc/", "vk_k", transport=httpx.MockTransport(handler))


def test_a_request_is_oip_json_with_nulls_for_missing_values_and_the_parameters() -> None:
    seen: list[httpx.Request] = []
    ok = client(lambda _: httpx.Response(200, json={"outputs": [{"name": "p"}]}), seen)
    assert ok.infer("flight_delay", "r-1", COLUMNS, {"row_ids": "7,8"}) == 2
    request = seen[0]
    assert request.url == "http://svc/v2/models/flight_delay/infer"
    assert request.headers["authorization"] == "Bearer vk_k"
    body = json.loads(request.content)
    assert body == {
        "id": "r-1",
        "inputs": [
            {"name": "carrier", "datatype": "BYTES", "shape": [2], "data": ["UA", None]},
            {"name": "distance", "datatype": "FP32", "shape": [2], "data": [719.0, None]},
        ],
        "parameters": {"row_ids": "7,8"},
    }


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, ErrorCode.INVALID_INPUT),
        (401, ErrorCode.UNAUTHENTICATED),
        (403, ErrorCode.FORBIDDEN),
        (404, ErrorCode.MODEL_NOT_FOUND),
        (429, ErrorCode.UNAVAILABLE),
        (503, ErrorCode.UNAVAILABLE),
        (500, ErrorCode.INTERNAL),
    ],
)
def test_http_errors_keep_the_service_message_under_a_code(status: int, code: ErrorCode) -> None:
    failing = client(lambda _: httpx.Response(status, json={"error": "said why"}), [])
    with pytest.raises(VigieError) as caught:
        failing.model_inputs("flight_delay")
    assert caught.value.code is code and "said why" in caught.value.message


def test_a_connection_refused_is_unavailable_and_a_non_json_answer_internal() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(VigieError) as caught:
        client(refuse, []).model_inputs("m")
    assert caught.value.code is ErrorCode.UNAVAILABLE
    with pytest.raises(VigieError) as caught:
        client(lambda _: httpx.Response(200, content=b"<html>"), []).model_inputs("m")
    assert caught.value.code is ErrorCode.INTERNAL


def test_grpc_raw_strings_are_length_prefixed_with_empty_for_missing() -> None:
    raw = _raw_strings(COLUMNS["carrier"])
    assert raw == struct.pack("<I", 2) + b"UA" + struct.pack("<I", 0)


def test_grpc_to_nothing_listening_is_unavailable() -> None:
    grpc_client = GrpcClient("127.0.0.1:1", "vk_k", timeout_s=2.0)
    try:
        with pytest.raises(VigieError) as caught:
            grpc_client.infer("m", "r", COLUMNS, {})
    finally:
        grpc_client.close()
    assert caught.value.code is ErrorCode.UNAVAILABLE


def test_the_local_key_file_gives_the_predict_key(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(tmp_path / "home", None)
    assert local_predict_key(settings) is None
    settings.secrets_dir.mkdir(parents=True)
    (settings.secrets_dir / "api_keys.local").write_text(
        "# vigie local API keys\nVIGIE_PREDICT_KEY=vk_abc\nVIGIE_ADMIN_KEY=vk_def\n"
    )
    assert local_predict_key(settings) == "vk_abc"
