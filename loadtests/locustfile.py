"""Locust load test of the prediction service: OIP v2 REST, ``/predict`` and OIP v2 gRPC.

Two users, each drawing its rows from real flights (a Parquet of warehouse rows):

- ``RestUser`` posts OIP v2 JSON tensors to ``/v2/models/{model}/infer`` (3 in 4 calls)
  and BentoML's typed ``/predict`` (1 in 4), with ``Authorization: Bearer <key>``.
- ``GrpcUser`` calls ``inference.GRPCInferenceService/ModelInfer`` with plain grpcio and
  vigie's generated stubs (not ``tritonclient.grpc``: both define the ``inference``
  package), through a Locust custom client that fires one request event per call.

When Locust quits, the run fails (exit code 1, with the reason printed) if the failure
ratio is above ``--max-fail-ratio`` or the p99 of all requests is above ``--max-p99-ms``,
or if no request was made at all. Run it through ``make loadtest`` (see docs/loadtest.md)
or against a running service::

    locust -f loadtests/locustfile.py --headless -u 16 -r 8 -t 20s \\
        --host http://127.0.0.1:3000 --grpc-target 127.0.0.1:8001
"""

from __future__ import annotations

import functools
import itertools
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
import grpc.experimental.gevent as grpc_gevent
import pyarrow as pa
import pyarrow.parquet as pq
from locust import HttpUser, User, between, events, task
from locust.env import Environment
from locust.exception import StopUser

from vigie.config import load_settings
from vigie.errors import VigieError
from vigie.features.catalogue import CATALOGUE
from vigie.serving.harness import predict_key
from vigie.serving.proto import grpc_predict_v2_pb2 as pb
from vigie.serving.proto import grpc_predict_v2_pb2_grpc as pb_grpc

#: Rows kept from the flights file: enough variety, bounded memory per Locust process.
MAX_POOL_ROWS = 20_000
GRPC_DEFAULT_PORT = 8001


@events.init_command_line_parser.add_listener
def _arguments(parser: Any) -> None:
    parser.add_argument(
        "--grpc-target",
        default="",
        env_var="VIGIE_LOAD_GRPC_TARGET",
        help="host:port of OIP gRPC; default: the --host name, port 8001",
    )
    parser.add_argument(
        "--api-key",
        default="",
        env_var="VIGIE_PREDICT_KEY",
        is_secret=True,
        help="a key with the predict role; default: $VIGIE_HOME/secrets/api_keys.local",
    )
    parser.add_argument(
        "--flights",
        default="",
        env_var="VIGIE_LOAD_FLIGHTS",
        help="Parquet of real flights; default: the snapshots under $VIGIE_HOME",
    )
    parser.add_argument(
        "--models",
        default="flight_delay,arrival_delay",
        env_var="VIGIE_LOAD_MODELS",
        help="comma-separated models to call",
    )
    parser.add_argument(
        "--max-rows", type=int, default=8, env_var="VIGIE_LOAD_MAX_ROWS", help="rows per call"
    )
    parser.add_argument(
        "--max-fail-ratio",
        type=float,
        default=0.01,
        env_var="VIGIE_LOAD_MAX_FAIL_RATIO",
        help="fail the run above this share of failed requests",
    )
    parser.add_argument(
        "--max-p99-ms",
        type=float,
        default=500.0,
        env_var="VIGIE_LOAD_MAX_P99_MS",
        help="fail the run when the p99 of all requests is above this (milliseconds)",
    )


@dataclass(frozen=True)
class Flights:
    """Real flights, one dict per row: feature name to a str, a float or None."""

    rows: tuple[dict[str, Any], ...]

    def sample(self, count: int) -> list[dict[str, Any]]:
        """``count`` random rows."""
        return random.sample(self.rows, min(count, len(self.rows)))


@functools.cache
def load_flights(location: str) -> Flights:
    """The catalogue features of the flights in ``location``: a Parquet file, or a folder
    of snapshots joined on ``flight_key`` (each model's snapshot holds its own features).
    """
    path = Path(location)
    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    if not files:
        raise SystemExit(f"locustfile: no flights in {path}; give --flights FILE.parquet")
    merged: dict[Any, dict[str, Any]] = {}
    for file in files:
        table = pq.read_table(file)
        names = [n for n in table.column_names if n in CATALOGUE]
        columns = {n: _plain_column(table.column(n)) for n in names}
        keys = table.column("flight_key").to_pylist() if "flight_key" in table.column_names else []
        for index in range(min(table.num_rows, MAX_POOL_ROWS)):
            key = keys[index] if keys else (file, index)
            merged.setdefault(key, {}).update({n: columns[n][index] for n in names})
    return Flights(tuple(merged.values()))


def _plain_column(column: pa.ChunkedArray) -> list[Any]:
    values = column.to_pylist()
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return values
    # Floats whatever the warehouse returned (integers, decimals); NaN travels as null.
    return [None if v is None or math.isnan(v) else float(v) for v in values]


@functools.cache
def api_key(given: str) -> str:
    """``--api-key``, else the generated local predict key under ``$VIGIE_HOME``."""
    if given:
        return given
    try:
        return predict_key(load_settings())
    except VigieError as error:
        raise SystemExit(
            f"locustfile: no API key; set VIGIE_PREDICT_KEY or --api-key ({error})"
        ) from error


def _options(environment: Environment) -> Any:
    return environment.parsed_options


def flights_for(environment: Environment) -> Flights:
    """The flight pool of this Locust process."""
    location = _options(environment).flights or str(load_settings().snapshots_dir)
    return load_flights(location)


@events.init.add_listener
def _start(environment: Environment, **_: Any) -> None:
    # grpcio's blocking calls must yield to gevent, or one call stalls every user.
    grpc_gevent.init_gevent()
    # Fail at once, with a message, rather than with every user's first request.
    if _options(environment) is not None:
        api_key(_options(environment).api_key)
        flights_for(environment)


@events.quitting.add_listener
def _enforce_thresholds(environment: Environment, **_: Any) -> None:
    options, total = _options(environment), environment.stats.total
    problems = []
    if total.num_requests == 0:
        problems.append("no request was made")
    if total.fail_ratio > options.max_fail_ratio:
        problems.append(
            f"failure ratio {total.fail_ratio:.2%} is above {options.max_fail_ratio:.2%} "
            f"({total.num_failures} of {total.num_requests})"
        )
    p99 = total.get_response_time_percentile(0.99) or 0
    if p99 > options.max_p99_ms:
        problems.append(f"p99 {p99:.0f} ms is above {options.max_p99_ms:.0f} ms")
    if problems:
        print("loadtest FAILED: " + "; ".join(problems))
        environment.process_exit_code = 1
    else:
        print(
            f"loadtest passed: {total.num_requests} requests, failure ratio "
            f"{total.fail_ratio:.2%}, p99 {p99:.0f} ms"
        )


@dataclass(frozen=True)
class InputSpec:
    """One model input as the metadata describes it."""

    name: str
    datatype: str


def _row_counts(environment: Environment) -> Iterator[int]:
    top = max(1, _options(environment).max_rows)
    while True:
        yield random.randint(1, top)


_request_ids = itertools.count()


def request_id(protocol: str) -> str:
    """A request id unique within this Locust process."""
    return f"load-{protocol}-{next(_request_ids)}"


class RestUser(HttpUser):
    """OIP v2 REST JSON tensors and ``/predict``, both with a bearer key."""

    wait_time = between(0.0, 0.05)

    def on_start(self) -> None:
        """Ask each model's inputs; a model that cannot be described stops this user."""
        options = _options(self.environment)
        self.client.headers["Authorization"] = f"Bearer {api_key(options.api_key)}"
        self.flights = flights_for(self.environment)
        self.rows = _row_counts(self.environment)
        self.inputs: dict[str, list[InputSpec]] = {}
        for model in options.models.split(","):
            with self.client.get(
                f"/v2/models/{model}", name="/v2/models/[model]", catch_response=True
            ) as answer:
                if answer.status_code != 200:
                    answer.failure(f"metadata of {model}: {answer.status_code} {answer.text}")
                    raise StopUser
                document = answer.json()
                self.inputs[model] = [
                    InputSpec(i["name"], i["datatype"]) for i in document["inputs"]
                ]

    @task(3)
    def oip_infer(self) -> None:
        """One OIP v2 JSON infer call of 1 to --max-rows real flights."""
        model = random.choice(list(self.inputs))
        flights = self.flights.sample(next(self.rows))
        body = {
            "id": request_id("rest"),
            "inputs": [
                {
                    "name": spec.name,
                    "datatype": spec.datatype,
                    "shape": [len(flights)],
                    "data": [flight.get(spec.name) for flight in flights],
                }
                for spec in self.inputs[model]
            ],
        }
        with self.client.post(
            f"/v2/models/{model}/infer",
            json=body,
            name="/v2/models/[model]/infer",
            catch_response=True,
        ) as answer:
            _check(answer, lambda doc: len(doc["outputs"][0]["data"]) == len(flights))

    @task(1)
    def predict(self) -> None:
        """One ``/predict`` call of 1 to --max-rows real flights."""
        model = random.choice(list(self.inputs))
        flights = self.flights.sample(next(self.rows))
        with self.client.post(
            "/predict", json={"model": model, "flights": flights}, catch_response=True
        ) as answer:
            _check(answer, lambda doc: len(doc["predictions"]) == len(flights))


def _check(answer: Any, complete: Callable[[Any], bool]) -> None:
    if answer.status_code != 200:
        answer.failure(f"{answer.status_code}: {answer.text[:200]}")
    elif not complete(answer.json()):
        answer.failure("not one prediction per row")
    else:
        answer.success()


class GrpcClient:
    """A Locust custom client: calls a gRPC stub and fires one request event per call."""

    def __init__(self, environment: Environment, target: str, key: str) -> None:
        self.environment = environment
        self.channel = grpc.insecure_channel(target)
        self.stub = pb_grpc.GRPCInferenceServiceStub(self.channel)
        self.metadata = (("authorization", f"Bearer {key}"),)

    def call(self, method: str, request: Any, name: str, timeout: float = 10.0) -> Any:
        """``stub.<method>(request)``, timed and reported under ``name`` (type ``grpc``)."""
        started = time.perf_counter()
        response, exception, length = None, None, 0
        try:
            response = getattr(self.stub, method)(request, metadata=self.metadata, timeout=timeout)
            length = response.ByteSize()
        except grpc.RpcError as err:
            exception = err
        self.environment.events.request.fire(
            request_type="grpc",
            name=name,
            response_time=(time.perf_counter() - started) * 1000.0,
            response_length=length,
            response=response,
            context={},
            exception=exception,
        )
        return response

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()


def grpc_target(environment: Environment) -> str:
    """``--grpc-target``, else the --host name on port 8001."""
    given = _options(environment).grpc_target
    if given:
        return str(given)
    host = urlsplit(environment.host or "http://127.0.0.1").hostname or "127.0.0.1"
    return f"{host}:{GRPC_DEFAULT_PORT}"


def _contents(datatype: str, values: list[Any]) -> pb.InferTensorContents:
    if datatype == "BYTES":
        # A missing category travels as "": an unknown value, the out-of-vocabulary bucket.
        return pb.InferTensorContents(bytes_contents=[(v or "").encode() for v in values])
    return pb.InferTensorContents(fp32_contents=[float("nan") if v is None else v for v in values])


class GrpcUser(User):
    """OIP v2 ``ModelInfer`` over gRPC with typed contents, plain grpcio and vigie's stubs."""

    wait_time = between(0.0, 0.05)

    def on_start(self) -> None:
        """Open a channel and ask each model's inputs; a failure stops this user."""
        options = _options(self.environment)
        self.client = GrpcClient(
            self.environment, grpc_target(self.environment), api_key(options.api_key)
        )
        self.flights = flights_for(self.environment)
        self.rows = _row_counts(self.environment)
        self.inputs: dict[str, list[InputSpec]] = {}
        for model in options.models.split(","):
            answer = self.client.call(
                "ModelMetadata", pb.ModelMetadataRequest(name=model), "ModelMetadata"
            )
            if answer is None:
                raise StopUser
            self.inputs[model] = [InputSpec(i.name, i.datatype) for i in answer.inputs]

    def on_stop(self) -> None:
        """Close the channel."""
        self.client.close()

    @task
    def model_infer(self) -> None:
        """One ModelInfer call of 1 to --max-rows real flights."""
        model = random.choice(list(self.inputs))
        flights = self.flights.sample(next(self.rows))
        request = pb.ModelInferRequest(
            model_name=model,
            id=request_id("grpc"),
            inputs=[
                pb.ModelInferRequest.InferInputTensor(
                    name=spec.name,
                    datatype=spec.datatype,
                    shape=[len(flights)],
                    contents=_contents(spec.datatype, [f.get(spec.name) for f in flights]),
                )
                for spec in self.inputs[model]
            ],
        )
        self.client.call("ModelInfer", request, "ModelInfer")
