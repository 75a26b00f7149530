"""The three edges on the real service: the key first on every protected route, and a bad
request never failing the good ones it arrives with.

One service (the ``server`` fixture: both models in production over a small trained
registry) answers valid and malformed requests sent together over OIP REST and OIP gRPC
into the same batching queue; every valid one must succeed, every malformed one must get a
client status naming its input, and the batch metrics must show the valid ones were
batched together.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from vigie.cli.serve import banner
from vigie.serving.auth import create_key, revoke_key
from vigie.serving.proto import grpc_predict_v2_pb2 as pb
from vigie.serving.proto import grpc_predict_v2_pb2_grpc as pb_grpc

from .running import Server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "flight_delay"
#: Seconds the service may take to see a key revoked (its key-file refresh).
KEY_REFRESH_S = 15.0


@pytest.fixture(scope="module")
def inputs(server: Server) -> list[dict[str, Any]]:
    """The served model's inputs (name, datatype) from its metadata."""
    answer = httpx.get(f"{server.rest}/v2/models/{MODEL}", headers=server.headers, timeout=10)
    assert answer.status_code == 200, answer.text
    return list(answer.json()["inputs"])


@pytest.fixture(scope="module")
def revoked_key(server: Server) -> Iterator[str]:
    """A key that existed and was revoked: well-formed, known, refused."""
    key_id, key = create_key(server.settings, "predict", actor="vigie-tests")
    revoke_key(server.settings, key_id, actor="vigie-tests")
    deadline = time.monotonic() + KEY_REFRESH_S
    probe = f"{server.rest}/v2/models/{MODEL}"
    while time.monotonic() < deadline:  # until the service has read the revocation
        headers = {"Authorization": f"Bearer {key}"}
        if httpx.get(probe, headers=headers, timeout=10).status_code == 401:
            break
        time.sleep(0.5)
    yield key


def rest_body(inputs: list[dict[str, Any]], carrier: Any = "AA") -> bytes:
    tensors = []
    for spec in inputs:
        if spec["datatype"] == "BYTES":
            value = carrier if spec["name"] == "carrier" else "JFK"
        else:
            value = 1.0
        tensors.append(
            {"name": spec["name"], "datatype": spec["datatype"], "shape": [1], "data": [value]}
        )
    # json.dumps writes a lone surrogate as the escape "\ud800": valid JSON, not valid Unicode
    return json.dumps({"inputs": tensors}).encode()


def grpc_request(inputs: list[dict[str, Any]], carrier: bytes = b"AA") -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=MODEL)
    for spec in inputs:
        tensor = request.inputs.add(name=spec["name"], datatype=spec["datatype"], shape=[1])
        if spec["datatype"] == "BYTES":
            tensor.contents.bytes_contents.append(carrier if spec["name"] == "carrier" else b"JFK")
        else:
            tensor.contents.fp32_contents.append(1.0)
    return request


def batch_totals(server: Server) -> tuple[float, float]:
    """(batches, rows) the served ``flight_delay`` version's batcher has formed so far."""
    text = httpx.get(f"{server.rest}/metrics", timeout=10).text
    found = {}
    for kind in ("count", "sum"):
        pattern = rf'^vigie_batch_rows_{kind}\{{model="{MODEL}",version="1"\}} (\S+)$'
        values = [float(v) for v in re.findall(pattern, text, flags=re.MULTILINE)]
        found[kind] = sum(values)
    return found["count"], found["sum"]


async def _mixed_round(
    server: Server, inputs: list[dict[str, Any]], stub: Any, metadata: list[tuple[str, str]]
) -> tuple[list[Any], list[Any], list[Any], list[Any]]:
    url = f"{server.rest}/v2/models/{MODEL}/infer"
    headers = {**server.headers, "Content-Type": "application/json"}
    async with httpx.AsyncClient(timeout=30) as client:
        good_rest = [
            client.post(url, content=rest_body(inputs), headers=headers) for _ in range(40)
        ]
        bad_rest = [
            client.post(url, content=rest_body(inputs, "\ud800"), headers=headers) for _ in range(8)
        ]
        good_grpc = [stub.ModelInfer(grpc_request(inputs), metadata=metadata) for _ in range(16)]
        bad_grpc = [
            stub.ModelInfer(grpc_request(inputs, b"\xff\xfe"), metadata=metadata) for _ in range(4)
        ]
        calls = [*good_rest, *bad_rest, *good_grpc, *bad_grpc]
        answers = await asyncio.gather(*calls, return_exceptions=True)
    cut = [0, 40, 48, 64, 68]
    parts = [answers[a:b] for a, b in zip(cut, cut[1:], strict=False)]
    return parts[0], parts[1], parts[2], parts[3]


def test_malformed_requests_never_fail_the_valid_ones_batched_with_them(
    server: Server, inputs: list[dict[str, Any]]
) -> None:
    batches_before, rows_before = batch_totals(server)
    valid = 0

    async def scenario() -> None:
        nonlocal valid
        metadata = [("authorization", f"Bearer {server.key}")]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            for _ in range(3):
                good_rest, bad_rest, good_grpc, bad_grpc = await _mixed_round(
                    server, inputs, stub, metadata
                )
                for answer in good_rest:
                    assert isinstance(answer, httpx.Response), answer
                    assert answer.status_code == 200, answer.text
                for answer in bad_rest:
                    assert isinstance(answer, httpx.Response), answer
                    assert answer.status_code == 400, answer.text
                    assert "carrier" in answer.json()["error"]
                    assert "Unicode" in answer.json()["error"]
                for answer in good_grpc:
                    assert isinstance(answer, pb.ModelInferResponse), answer
                    assert answer.model_name == MODEL
                for answer in bad_grpc:
                    assert isinstance(answer, grpc.aio.AioRpcError), answer
                    assert answer.code() is grpc.StatusCode.INVALID_ARGUMENT
                    assert "carrier" in (answer.details() or "")
                valid += len(good_rest) + len(good_grpc)

    asyncio.run(scenario())

    batches_after, rows_after = batch_totals(server)
    assert rows_after - rows_before == valid, "only the valid requests reached a batch"
    assert batches_after - batches_before < valid, "the valid requests were batched together"
    assert httpx.get(f"{server.rest}/v2/health/ready", timeout=10).status_code == 200


def predict_body(*, well_formed: bool) -> dict[str, Any]:
    if well_formed:
        return {"model": MODEL, "flights": [{"carrier": "AA", "distance": 1000.0}]}
    return {"model": MODEL, "flights": "not a list", "unexpected": {"deep": [1, 2]}}


def test_predict_asks_for_the_key_before_it_reads_the_body(
    server: Server, revoked_key: str
) -> None:
    for headers, status in (
        ({}, 401),
        ({"Authorization": "Bearer vk_not_a_key"}, 401),
        ({"Authorization": f"Bearer {revoked_key}"}, 401),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, 401),
    ):
        for well_formed in (True, False):
            answer = httpx.post(
                f"{server.rest}/predict",
                json=predict_body(well_formed=well_formed),
                headers=headers,
                timeout=10,
            )
            assert answer.status_code == status, (headers, well_formed, answer.text)
            assert answer.headers.get("www-authenticate") == "Bearer"
            error = answer.json()["error"]
            assert "key" in error.lower()
            assert "flights" not in error, "nothing of the schema is told without a key"

    malformed = httpx.post(
        f"{server.rest}/predict",
        json=predict_body(well_formed=False),
        headers=server.headers,
        timeout=10,
    )
    assert malformed.status_code == 400
    good = httpx.post(
        f"{server.rest}/predict", json=predict_body(well_formed=True), headers=server.headers
    )
    assert good.status_code == 200, good.text
    assert len(good.json()["predictions"]) == 1


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("GET", "/v2", None),
        ("GET", f"/v2/models/{MODEL}", None),
        ("GET", f"/v2/models/{MODEL}/versions/1", None),
        ("GET", f"/v2/models/{MODEL}/ready", None),
        ("POST", f"/v2/models/{MODEL}/infer", b'{"inputs": []}'),
        ("POST", f"/v2/models/{MODEL}/infer", b"{not json"),
        ("POST", f"/v2/models/{MODEL}/versions/1/infer", b'{"inputs": "x"}'),
    ],
)
def test_every_protected_oip_rest_route_refuses_a_missing_wrong_or_revoked_key(
    server: Server, revoked_key: str, method: str, path: str, body: bytes | None
) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer vk_wrong"},
        {"Authorization": f"Bearer {revoked_key}"},
    ):
        answer = httpx.request(method, f"{server.rest}{path}", content=body, headers=headers)
        assert answer.status_code == 401, (headers, answer.text)
        assert answer.headers.get("www-authenticate") == "Bearer"


def test_every_protected_grpc_method_refuses_a_missing_wrong_or_revoked_key(
    server: Server, inputs: list[dict[str, Any]], revoked_key: str
) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        calls = (
            (stub.ModelInfer, grpc_request(inputs)),
            (stub.ModelInfer, pb.ModelInferRequest(model_name=MODEL)),  # malformed too
            (stub.ModelMetadata, pb.ModelMetadataRequest(name=MODEL)),
            (stub.ServerMetadata, pb.ServerMetadataRequest()),
        )
        for metadata in (
            (),
            (("authorization", "Bearer vk_wrong"),),
            (("x-api-key", revoked_key),),
        ):
            for method, request in calls:
                with pytest.raises(grpc.RpcError) as refused:
                    method(request, metadata=metadata, timeout=10)
                assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED, metadata


def test_every_address_the_start_up_banner_gives_answers(server: Server) -> None:
    port = int(server.rest.rsplit(":", 1)[1])
    text = banner(server.settings.model_copy(update={"rest_port": port}), Path("keys"))
    urls = {url.rstrip(")") for url in re.findall(r"http://[^\s'\"]+", text)}
    assert f"{server.rest}/docs.json" in urls and f"{server.rest}/" in urls
    for url in urls - {f"{server.rest}/predict"}:  # /predict is the POST shown above it
        answer = httpx.get(url, headers=server.headers, timeout=10)
        assert answer.status_code == 200, (url, answer.status_code)
    assert "/predict" in httpx.get(f"{server.rest}/docs.json", timeout=10).json()["paths"]


def test_the_worker_checked_bentomls_middleware_stack_at_start(server: Server) -> None:
    log = server.log.read_text()
    assert "BentoML's middleware stack has vigie's layers" in log
    for ours in ("RequestDeadline", "SkippingTrafficMetrics", "SkippingTracing"):
        assert ours in log


def test_predict_is_traced_and_the_oip_routes_are_not(
    server: Server, inputs: list[dict[str, Any]]
) -> None:
    """BentoML's tracing layer gives each traced request a span, whose id it answers as
    ``x-bentoml-request-id``; vigie's replacement lets ``/v2`` through untraced."""
    traced = httpx.post(
        f"{server.rest}/predict", json=predict_body(well_formed=True), headers=server.headers
    )
    assert traced.status_code == 200
    assert re.fullmatch(r"[0-9a-f]{16}", traced.headers.get("x-bentoml-request-id", ""))
    untraced = httpx.post(
        f"{server.rest}/v2/models/{MODEL}/infer",
        content=rest_body(inputs),
        headers={**server.headers, "Content-Type": "application/json"},
    )
    assert untraced.status_code == 200
    assert "x-bentoml-request-id" not in untraced.headers
    assert untraced.headers["x-vigie-request-id"]


#: The service's request deadline (``traffic={"timeout": 30}`` in vigie.serving.service).
DEADLINE_S = 30


def test_a_request_that_gets_no_response_in_time_is_answered_504_by_the_deadline(
    server: Server,
) -> None:
    """A /predict whose body never arrives whole: the route waits for it, and vigie's
    RequestDeadline (in BentoML's place) answers 504 once the deadline passes."""
    host, port = server.host_port.rsplit(":", 1)
    head = (
        "POST /predict HTTP/1.1\r\n"
        f"Host: {server.host_port}\r\n"
        f"Authorization: Bearer {server.key}\r\n"
        "Content-Type: application/json\r\n"
        "Content-Length: 1000\r\n\r\n"
        '{"model": "flight_delay", "flights": ['
    )
    with socket.create_connection((host, int(port)), timeout=DEADLINE_S + 30) as client:
        client.sendall(head.encode())
        received = b""
        while b"\r\n\r\n" not in received or not received.rstrip().endswith(b"}"):
            chunk = client.recv(4096)
            if not chunk:
                break
            received += chunk
    answer = received.decode(errors="replace")

    assert answer.startswith("HTTP/1.1 504"), answer[:200]
    assert f"in {DEADLINE_S}" in answer
    assert httpx.get(f"{server.rest}/v2/health/ready", timeout=10).status_code == 200
