"""Checks of a promotion against the running service, over OIP v2 REST (httpx).

A smoke test asks a named version (``/v2/models/{name}/versions/{v}/infer``) or the
unversioned route about real flights and checks every output is finite and in range; a load
test sends unversioned requests (the route the canary share applies to) from a few threads
for a bounded time and checks the error ratio and the 99th percentile latency; a reload
check waits until the unversioned route answers with a given version. Every check returns
a :class:`CheckResult` rather than raising: the promotion decides what a failure means.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import numpy as np
import pandas as pd

#: Rows in each smoke or load request.
ROWS_PER_REQUEST = 8
#: Consecutive answers from the expected version before a reload counts as done.
RELOAD_CONSECUTIVE = 5


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one live check.

    Attributes:
        passed: Whether the check passed.
        detail: One sentence for the report table.
        data: Measurements (requests, error ratio, p99, versions seen, ...).
    """

    passed: bool
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LoadLimits:
    """Bounds of the load test.

    Attributes:
        seconds: How long requests are sent.
        concurrency: Threads sending requests.
        max_error_ratio: Highest share of failed requests allowed.
        max_p99_ms: Highest 99th percentile latency allowed, in milliseconds.
    """

    seconds: float = 5.0
    concurrency: int = 4
    max_error_ratio: float = 0.01
    max_p99_ms: float = 1000.0


class LiveChecker(Protocol):
    """What a promotion needs from the running service."""

    url: str

    def unreachable(self) -> str | None:
        """None when the service answers ready, else why not."""

    def smoke(
        self,
        model: str,
        version: str | None,
        sample: pd.DataFrame,
        *,
        requests: int,
        expect_version: str,
        bounds: tuple[float, float],
    ) -> CheckResult:
        """Ask ``version`` (None: the unversioned route) about ``requests`` slices of rows."""

    def wait_for(
        self, model: str, version: str, sample: pd.DataFrame, *, timeout_s: float
    ) -> CheckResult:
        """Wait until the unversioned route answers with ``version``."""

    def load(
        self, model: str, sample: pd.DataFrame, *, limits: LoadLimits, staging_version: str
    ) -> CheckResult:
        """Bounded concurrent load on the unversioned (canary) route."""


class HttpLiveChecker:
    """:class:`LiveChecker` over the OIP v2 REST routes.

    Args:
        url: The service, e.g. ``http://127.0.0.1:3000``.
        key: An API key with the ``predict`` role (None: send no key).
        timeout_s: Per request.
        transport: An httpx transport instead of the network (tests).
    """

    def __init__(
        self,
        url: str,
        key: str | None,
        *,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._headers = {"authorization": f"Bearer {key}"} if key else {}
        self._timeout = timeout_s
        self._transport = transport

    def _client(self, connections: int = 1) -> httpx.Client:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        return httpx.Client(
            base_url=self.url,
            headers=self._headers,
            timeout=self._timeout,
            limits=limits,
            transport=self._transport,
        )

    def unreachable(self) -> str | None:
        """None when ``/v2/health/ready`` answers 200, else the reason."""
        try:
            with self._client() as http:
                answer = http.get("/v2/health/ready", timeout=min(self._timeout, 5.0))
        except httpx.HTTPError as err:
            return f"{self.url} is not reachable ({type(err).__name__}: {err})"
        if answer.status_code != httpx.codes.OK:
            return f"{self.url}/v2/health/ready answered HTTP {answer.status_code}"
        return None

    def smoke(
        self,
        model: str,
        version: str | None,
        sample: pd.DataFrame,
        *,
        requests: int,
        expect_version: str,
        bounds: tuple[float, float],
    ) -> CheckResult:
        """See :meth:`LiveChecker.smoke`; fails on the first bad answer."""
        route = f"/v2/models/{model}" + (f"/versions/{version}" if version else "")
        rows = 0
        try:
            with self._client() as http:
                inputs = _input_specs(http, route)
                for body in _bodies(sample, inputs, requests):
                    document = _infer(http, route, body)
                    problem = _check_answer(document, body, expect_version, bounds)
                    if problem:
                        return CheckResult(False, f"{route}: {problem}", {"rows": rows})
                    rows += _rows(body)
        except (httpx.HTTPError, _BadAnswer) as err:
            return CheckResult(False, f"{route}: {err}", {"rows": rows})
        low, high = bounds
        return CheckResult(
            True,
            f"{requests} request(s), {rows} real flights: every output finite in "
            f"[{low:g}, {high:g}] from version {expect_version}",
            {"requests": requests, "rows": rows, "route": route},
        )

    def wait_for(
        self, model: str, version: str, sample: pd.DataFrame, *, timeout_s: float
    ) -> CheckResult:
        """See :meth:`LiveChecker.wait_for`; polls the unversioned route."""
        route = f"/v2/models/{model}"
        deadline = time.monotonic() + timeout_s
        started = time.monotonic()
        seen: list[str] = []
        streak = 0
        with self._client() as http:
            try:
                body = next(_bodies(sample, _input_specs(http, route), 1))
            except (httpx.HTTPError, _BadAnswer) as err:
                return CheckResult(False, f"{route}: {err}")
            while time.monotonic() < deadline:
                try:
                    answered = str(_infer(http, route, body).get("model_version"))
                except (httpx.HTTPError, _BadAnswer) as err:
                    answered = f"error: {err}"
                seen = [*seen[-9:], answered]
                streak = streak + 1 if answered == version else 0
                if streak >= RELOAD_CONSECUTIVE:
                    waited = time.monotonic() - started
                    return CheckResult(
                        True,
                        f"the service answers with version {version} after {waited:.1f} s",
                        {"waited_s": round(waited, 3)},
                    )
                time.sleep(0.2)
        return CheckResult(
            False,
            f"the service did not serve version {version} within {timeout_s:g} s "
            f"(last answers: {', '.join(seen[-3:]) or 'none'})",
            {"timeout_s": timeout_s, "last_answers": seen},
        )

    def load(
        self, model: str, sample: pd.DataFrame, *, limits: LoadLimits, staging_version: str
    ) -> CheckResult:
        """See :meth:`LiveChecker.load`."""
        route = f"/v2/models/{model}"
        with self._client(limits.concurrency) as http:
            try:
                bodies = list(_bodies(sample, _input_specs(http, route), 16))
            except (httpx.HTTPError, _BadAnswer) as err:
                return CheckResult(False, f"{route}: {err}")
            tally = _Tally()
            deadline = time.monotonic() + limits.seconds
            with ThreadPoolExecutor(limits.concurrency) as pool:
                for _ in range(limits.concurrency):
                    pool.submit(
                        _send_until, deadline, lambda b: _infer(http, route, b), bodies, tally
                    )
        return tally.judge(limits, staging_version)


class _BadAnswer(Exception):
    """The service answered, but not a usable OIP document."""


@dataclass
class _Tally:
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    versions: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def judge(self, limits: LoadLimits, staging_version: str) -> CheckResult:
        total = len(self.latencies_ms) + len(self.errors)
        if total == 0:
            return CheckResult(False, "no request completed during the load test")
        ratio = len(self.errors) / total
        p99 = float(np.percentile(self.latencies_ms, 99)) if self.latencies_ms else math.inf
        data = {
            "requests": total,
            "errors": len(self.errors),
            "error_ratio": round(ratio, 4),
            "p99_ms": round(p99, 2),
            "answered_by_version": dict(self.versions),
            "staging_answers": self.versions.get(staging_version, 0),
            "first_errors": self.errors[:3],
        }
        passed = ratio <= limits.max_error_ratio and p99 <= limits.max_p99_ms
        detail = (
            f"{total} requests in {limits.seconds:g} s x {limits.concurrency}: error ratio "
            f"{ratio:.2%} (max {limits.max_error_ratio:.2%}), p99 {p99:.1f} ms "
            f"(max {limits.max_p99_ms:g}), {data['staging_answers']} answered by staging "
            f"version {staging_version}"
        )
        return CheckResult(passed, detail, data)


def _send_until(
    deadline: float,
    send: Callable[[dict[str, Any]], dict[str, Any]],
    bodies: list[dict[str, Any]],
    tally: _Tally,
) -> None:
    index = 0
    while time.monotonic() < deadline:
        body = bodies[index % len(bodies)]
        index += 1
        start = time.perf_counter()
        try:
            version = str(send(body).get("model_version"))
        except (httpx.HTTPError, _BadAnswer) as err:
            with tally.lock:
                tally.errors.append(str(err)[:200])
            continue
        elapsed = (time.perf_counter() - start) * 1000
        with tally.lock:
            tally.latencies_ms.append(elapsed)
            tally.versions[version] = tally.versions.get(version, 0) + 1


def _input_specs(http: httpx.Client, route: str) -> list[dict[str, Any]]:
    answer = http.get(route)
    if answer.status_code != httpx.codes.OK:
        raise _BadAnswer(f"metadata answered HTTP {answer.status_code}: {answer.text[:200]}")
    inputs = answer.json().get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise _BadAnswer("metadata lists no inputs")
    return inputs


def _infer(http: httpx.Client, route: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = http.post(f"{route}/infer", json=body)
    if answer.status_code != httpx.codes.OK:
        raise _BadAnswer(f"HTTP {answer.status_code}: {answer.text[:200]}")
    document = answer.json()
    if not isinstance(document, dict):
        raise _BadAnswer("the answer is not a JSON object")
    return document


def _bodies(
    sample: pd.DataFrame, inputs: list[dict[str, Any]], count: int
) -> Iterator[dict[str, Any]]:
    """``count`` OIP request bodies, each a different slice of the sample's real flights."""
    missing = [spec["name"] for spec in inputs if spec["name"] not in sample.columns]
    if missing:
        raise _BadAnswer(f"the sample lacks the model inputs {', '.join(missing)}")
    if sample.empty:
        raise _BadAnswer("the sample holds no rows")
    for i in range(count):
        start = (i * ROWS_PER_REQUEST) % len(sample)
        rows = sample.iloc[start : start + ROWS_PER_REQUEST]
        yield {"inputs": [_tensor(spec, rows[spec["name"]]) for spec in inputs]}


def _tensor(spec: dict[str, Any], column: pd.Series) -> dict[str, Any]:
    if spec["datatype"] == "BYTES":
        data: list[Any] = ["" if pd.isna(v) else str(v) for v in column.tolist()]
    else:
        data = [None if pd.isna(v) else float(v) for v in column.tolist()]
    return {"name": spec["name"], "datatype": spec["datatype"], "shape": [len(data)], "data": data}


def _rows(body: dict[str, Any]) -> int:
    return int(body["inputs"][0]["shape"][0])


def _check_answer(
    document: dict[str, Any],
    body: dict[str, Any],
    expect_version: str,
    bounds: tuple[float, float],
) -> str | None:
    """Why an answer is wrong, or None."""
    answered = str(document.get("model_version"))
    if answered != expect_version:
        return f"answered by version {answered}, expected {expect_version}"
    outputs = document.get("outputs") or []
    if not outputs:
        return "the answer holds no outputs"
    low, high = bounds
    for output in outputs:
        values = np.asarray(output.get("data", []), dtype=np.float64)
        if values.size != _rows(body):
            return f"output {output.get('name')} has {values.size} values for {_rows(body)} rows"
        if not np.isfinite(values).all():
            return f"output {output.get('name')} holds non-finite values"
        if values.min() < low or values.max() > high:
            return (
                f"output {output.get('name')} outside [{low:g}, {high:g}]: "
                f"{values.min():.4g}..{values.max():.4g}"
            )
    return None
