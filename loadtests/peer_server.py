"""The plain server a user would write instead of vigie: FastAPI + ONNX Runtime, nothing else.

One ``InferenceSession`` with ONNX Runtime's default options, no batching, no
authentication, no metrics and no payload log; the same Open Inference Protocol v2 JSON
infer route as vigie (``POST /v2/models/{name}/infer``, JSON tensors, ``BYTES`` strings
with null for missing, numbers with null for missing). The endpoint is ``async`` and calls
ONNX Runtime directly: the fastest plain shape for a small model, so it is the stronger
peer. ``loadtests/bench_serving.py`` starts it with uvicorn on a free loopback port::

    python loadtests/peer_server.py --model path/to/model.onnx --port 8100
"""

from __future__ import annotations

import argparse
import math
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel


class InferTensor(BaseModel):
    """An OIP v2 JSON tensor."""

    name: str
    datatype: str
    shape: list[int]
    data: list[Any]


class InferRequest(BaseModel):
    """An OIP v2 inference request (the fields this server reads)."""

    id: str | None = None
    inputs: list[InferTensor]


class InferResponse(BaseModel):
    """An OIP v2 inference response."""

    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[InferTensor]


def create_app(model_path: str, name: str) -> FastAPI:
    """The peer app over one ONNX model served under ``name``."""
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    strings = {i.name for i in session.get_inputs() if i.type == "tensor(string)"}
    output = session.get_outputs()[0].name
    app = FastAPI(title="plain OIP peer")

    @app.get("/v2/health/ready")
    async def ready() -> dict[str, bool]:
        return {"ready": True}

    @app.post("/v2/models/{model}/infer")
    async def infer(model: str, request: InferRequest) -> InferResponse:
        if model != name:
            raise HTTPException(status_code=404, detail=f"unknown model {model}")
        try:
            feed = {t.name: _column(t, t.name in strings) for t in request.inputs}
            values = session.run([output], feed)[0].reshape(-1)
        except Exception as err:  # a plain server's whole error handling
            raise HTTPException(status_code=400, detail=str(err)) from err
        data = [None if math.isnan(v) else v for v in values.tolist()]
        return InferResponse(
            model_name=name,
            model_version="1",
            id=request.id,
            outputs=[InferTensor(name=output, datatype="FP32", shape=[len(data)], data=data)],
        )

    return app


def _column(tensor: InferTensor, is_string: bool) -> npt.NDArray[Any]:
    if is_string:
        return np.array(["" if v is None else v for v in tensor.data], dtype=object).reshape(-1, 1)
    numbers = [math.nan if v is None else v for v in tensor.data]
    return np.array(numbers, dtype=np.float32).reshape(-1, 1)


def main() -> None:
    """Serve the peer on loopback until stopped."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="path of the .onnx file")
    parser.add_argument("--name", default="flight_delay", help="model name in the route")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    args = parser.parse_args()
    app = create_app(args.model, args.name)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
