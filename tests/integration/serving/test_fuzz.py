"""Property-based fuzz of the real service: whatever a client sends, never a 5xx.

- schemathesis reads the OpenAPI document BentoML serves (``/docs.json``) and fuzzes every
  documented operation (``POST /predict`` and BentoML's infrastructure routes), with the
  ``predict`` key, checking ``not_a_server_error`` (its ``st run`` runner, all phases); a
  second test draws ``/predict`` bodies from the same schema with a served model name, so
  the flights reach the data plane instead of stopping at "unknown model".
- hypothesis posts OIP v2 REST infer bodies, from arbitrary JSON and raw bytes to tensors
  with wrong names, datatypes and shapes, huge numbers, "NaN" strings and nested garbage,
  with httpx: never a 5xx, and the server keeps answering.

Examples are bounded (``max_examples``), deadlines are off (a 2-CPU runner is slow, and
time is not what is tested), and hypothesis keeps no database in the working tree.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from .running import MODELS, Server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MAX_EXAMPLES = 80
FUZZ = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def api_schema(server: Server) -> Any:
    """The OpenAPI document the running service serves, as schemathesis reads it."""
    return schemathesis.openapi.from_url(f"{server.rest}/docs.json", timeout=30)


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.rest, headers=server.headers, timeout=60) as session:
        yield session


def test_no_documented_operation_answers_5xx(server: Server, tmp_path: Path) -> None:
    """Every operation of /docs.json, every phase (examples, coverage, fuzzing).

    Through schemathesis's own runner: its coverage phase (malformed content types,
    boundary values) finds what plain generation does not, and its report gives a ``curl``
    reproducer per failure. (Its pytest plugin does not run under pytest 9.)
    """
    command = [
        str(Path(sys.executable).parent / "st"),
        "run",
        f"{server.rest}/docs.json",
        "--header",
        f"Authorization: Bearer {server.key}",
        "--checks",
        "not_a_server_error",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--generation-database",
        "none",
        "--request-timeout",
        "30",
        "--no-color",
    ]
    done = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False
    )
    report = done.stdout + done.stderr
    assert "POST /predict" in report, report[-4000:]
    assert done.returncode == 0, report[-8000:]


@FUZZ
@given(data=st.data())
def test_predict_with_a_served_model_never_answers_5xx(
    data: st.DataObject, api_schema: Any, server: Server
) -> None:
    case = data.draw(api_schema["/predict"]["POST"].as_strategy())
    if isinstance(case.body, dict):
        case.body["model"] = data.draw(st.sampled_from(MODELS))
    case.call_and_validate(
        base_url=server.rest,
        headers=server.headers,
        checks=[not_a_server_error],
    )


@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/form-data",
        "multipart/form-data; boundary=xyz",
        "application/x-www-form-urlencoded",
    ],
)
def test_predict_refuses_a_form_body_without_a_5xx(client: httpx.Client, content_type: str) -> None:
    """Found by schemathesis (ST102): a form content type on /predict."""
    body = json.dumps({"model": MODELS[0], "flights": []})
    answer = client.post("/predict", content=body, headers={"Content-Type": content_type})
    assert answer.status_code < 500, (content_type, answer.status_code, answer.text[:300])


# --- OIP v2 REST infer, hypothesis bodies posted with httpx -------------------------------

_HUGE = st.sampled_from([10**30, -(10**30), 2**63, 1e308, -1e308, 5e-324, 3.5e38, 2**31])
_ODD_STRINGS = st.sampled_from(["NaN", "nan", "Infinity", "-Infinity", "inf", "", "\x00", "é" * 70])
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | _HUGE
    | _ODD_STRINGS
    | st.text(max_size=80)
)
JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=25,
)
DATATYPES = st.sampled_from(["BYTES", "FP32", "FP64", "INT64", "INT32", "BOOL", "FP16", "fp32"])


def _tensor(names: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "name": st.sampled_from(names) | st.text(max_size=12),
            "datatype": DATATYPES | JSON,
            "shape": st.lists(st.integers(-2, 5) | _HUGE, max_size=3) | JSON,
            "data": st.lists(_SCALARS | st.lists(_SCALARS, max_size=3), max_size=6) | JSON,
        },
        optional={"parameters": JSON},
    )


def _near_valid(specs: dict[str, str]) -> st.SearchStrategy[dict[str, Any]]:
    """Every input present and right but at most one, whose datatype, shape or values are odd.

    Values are drawn from the input's own kind (huge or tiny numbers, NaN, long strings),
    so many requests reach the model; the odd one is what is under test.
    """

    def tensor(name: str, datatype: str, rows: int, odd: bool) -> st.SearchStrategy[Any]:
        value = st.text(max_size=70) if datatype == "BYTES" else st.floats(width=64) | _HUGE
        clean = {
            "name": st.just(name),
            "datatype": st.just(datatype),
            "shape": st.sampled_from([[rows], [rows, 1]]),
            "data": st.lists(value, min_size=rows, max_size=rows),
        }
        if not odd:
            return st.fixed_dictionaries(clean)
        return st.fixed_dictionaries(
            {
                **clean,
                "datatype": st.just(datatype) | DATATYPES,
                "shape": st.sampled_from([[rows], [rows, 1], [1, rows], [rows + 1], [-1], []]),
                "data": st.lists(value | _SCALARS | st.lists(value), max_size=rows + 1),
            }
        )

    def body(rows: int, odd: str | None) -> st.SearchStrategy[dict[str, Any]]:
        tensors = (tensor(n, d, rows, n == odd) for n, d in specs.items())
        return st.fixed_dictionaries(
            {"inputs": st.tuples(*tensors).map(list)},
            optional={"id": st.text(max_size=20), "outputs": st.just([{"name": "nope"}])},
        )

    return st.tuples(st.integers(0, 5), st.none() | st.sampled_from(list(specs))).flatmap(
        lambda drawn: body(*drawn)
    )


def _bodies(specs: dict[str, str]) -> st.SearchStrategy[bytes]:
    names = list(specs)
    tensors = st.fixed_dictionaries(
        {"inputs": st.lists(_tensor(names), max_size=len(names) + 2)},
        optional={
            "id": JSON,
            "parameters": JSON,
            "outputs": st.lists(st.fixed_dictionaries({"name": st.text(max_size=12)}), max_size=3)
            | JSON,
        },
    )
    documents = _near_valid(specs) | tensors | JSON
    as_json = documents.map(lambda value: json.dumps(value).encode())  # NaN as NaN
    return as_json | st.binary(max_size=200)


@pytest.fixture(scope="module")
def input_specs(client: httpx.Client) -> dict[str, str]:
    """Input name to datatype, from the served model's metadata (both models share them)."""
    answer = client.get(f"/v2/models/{MODELS[0]}")
    assert answer.status_code == 200, answer.text
    return {spec["name"]: spec["datatype"] for spec in answer.json()["inputs"]}


@FUZZ
@given(data=st.data())
def test_oip_infer_never_answers_5xx(
    data: st.DataObject, client: httpx.Client, input_specs: dict[str, str], server: Server
) -> None:
    model = data.draw(st.sampled_from([*MODELS, "no_such_model"]))
    version = data.draw(st.sampled_from(["", "/versions/1", "/versions/999", "/versions/abc"]))
    body = data.draw(_bodies(input_specs))
    headers = data.draw(
        st.fixed_dictionaries(
            {},
            optional={
                "Content-Type": st.sampled_from(
                    ["application/json", "application/octet-stream", "text/plain", "multipart/x"]
                ),
                "Inference-Header-Content-Length": st.integers(-5, 1 << 40).map(str)
                | st.text(alphabet="0123456789-x", min_size=1, max_size=8),
            },
        )
    )
    answer = client.post(f"/v2/models/{model}{version}/infer", content=body, headers=headers)
    assert answer.status_code < 500, (model, version, headers, body[:300], answer.text[:300])
    assert server.process.poll() is None
