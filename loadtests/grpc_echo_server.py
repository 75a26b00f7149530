"""The ceiling of any Python gRPC server here: ``ModelInfer`` that does no work at all.

A ``grpc.aio`` server (uvloop, as in vigie's worker) answering every ``ModelInfer`` with
the same fixed one-output response, without reading the request: no decoding, no model,
no batching, no authentication, no metrics, no logs. ``loadtests/bench_serving.py`` runs it
as the ``grpc-echo`` target, with the very client and payloads of ``vigie-grpc``: the gap
between the two is what vigie itself costs, and the echo's own throughput against the
plain REST peer's says what a gRPC front end can reach on the machine at all::

    python loadtests/grpc_echo_server.py --port 8102
"""

from __future__ import annotations

import argparse
from typing import Any

import grpc
import uvloop

from vigie.serving.proto import grpc_predict_v2_pb2 as pb
from vigie.serving.proto import grpc_predict_v2_pb2_grpc as pb_grpc


class Echo(pb_grpc.GRPCInferenceServiceServicer):
    """``ModelInfer`` returns one prepared response; the other methods are not served."""

    def __init__(self) -> None:
        self._response = pb.ModelInferResponse(model_name="echo", model_version="1")
        self._response.outputs.add(name="probability", datatype="FP32", shape=[1])
        self._response.raw_output_contents.append(b"\x00\x00\x00\x00")

    async def ModelInfer(self, request: Any, context: Any) -> Any:
        """The prepared response, whatever was asked."""
        return self._response


async def serve(host: str, port: int) -> None:
    """Serve until cancelled."""
    server = grpc.aio.server()
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(Echo(), server)  # type: ignore[no-untyped-call]
    if server.add_insecure_port(f"{host}:{port}") == 0:
        raise SystemExit(f"cannot bind {host}:{port}")
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    """Serve the echo on loopback until stopped."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8102)
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
