"""The ``tritonclient.grpc`` driver, and the BYTES wire format checked against tritonclient.

``tritonclient.grpc`` compiles its own copy of the OIP protos under the same ``inference``
package as vigie's, and protobuf refuses two definitions of one message in a process. So
tests that use it run this file as a script, in a subprocess: it reads
``{"url": ..., "calls": [...]}`` as JSON on stdin and prints one result per call.
Nothing at module level imports either proto.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np


def _call(client: Any, call: dict[str, Any]) -> Any:
    import tritonclient.grpc as triton  # noqa: PLC0415 (the subprocess only)

    headers = call.get("headers")
    op = call["op"]
    if op == "live":
        return client.is_server_live(headers=headers)
    if op == "ready":
        return client.is_server_ready(headers=headers)
    if op == "model_ready":
        return client.is_model_ready(call["model"], call.get("version", ""), headers=headers)
    if op == "server_metadata":
        return client.get_server_metadata(headers=headers, as_json=True)
    if op == "model_metadata":
        return client.get_model_metadata(
            call["model"], call.get("version", ""), headers=headers, as_json=True
        )
    inputs = []
    for spec in call["inputs"]:
        dtype = object if spec["datatype"] == "BYTES" else np.float32
        data = np.array(spec["data"], dtype=dtype).reshape(spec.get("shape", [-1]))
        tensor = triton.InferInput(spec["name"], list(data.shape), spec["datatype"])
        tensor.set_data_from_numpy(data)
        inputs.append(tensor)
    outputs = [triton.InferRequestedOutput(name) for name in call.get("outputs", [])]
    result = client.infer(
        call["model"],
        inputs,
        model_version=call.get("version", ""),
        outputs=outputs or None,
        request_id=call.get("id", ""),
        headers=headers,
    )
    response = result.get_response()
    return {
        "id": response.id,
        "model_version": response.model_version,
        "outputs": {o.name: result.as_numpy(o.name).tolist() for o in response.outputs},
    }


def drive() -> None:
    """Read the calls on stdin, run them with tritonclient.grpc, print the results."""
    import tritonclient.grpc as triton  # noqa: PLC0415 (the subprocess only)
    from tritonclient.utils import InferenceServerException  # noqa: PLC0415

    spec = json.load(sys.stdin)
    results: list[dict[str, Any]] = []
    with triton.InferenceServerClient(spec["url"]) as client:
        for call in spec["calls"]:
            try:
                results.append({"ok": True, "value": _call(client, call)})
            except InferenceServerException as err:
                results.append({"ok": False, "status": err.status(), "message": err.message()})
    json.dump(results, sys.stdout)


def test_raw_bytes_from_tritonclient_split_into_the_same_elements() -> None:
    from tritonclient.utils import serialize_byte_tensor  # noqa: PLC0415

    from vigie.serving.grpc_codec import split_bytes_elements  # noqa: PLC0415

    values = np.array(["AA", "", "Zürich", "x" * 300], dtype=object)
    raw = serialize_byte_tensor(values).item()
    assert split_bytes_elements("carrier", raw) == [v.encode() for v in values]


if __name__ == "__main__":
    drive()
