"""``vigie simulate``: the closed loop over a year, against a model never retrained.

Starts the prediction service (``vigie serve``) as a child on free ports, then for each month
replays it (``vigie replay``), analyses it with the drift sidecar's core in process
(:class:`vigie.monitoring.sidecar.Monitor` over the payload and outcome logs), and lets
:func:`vigie.retraining.simulation.run_simulation` retrain and promote. Writes
``docs/closed-loop.md`` and ``.png`` (``closed-loop-full.*`` with ``--client-fields full``).
The service is stopped by its PID; its
output goes to ``<home>/logs/simulate-serve.log``.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from vigie.cli.children import START_TIMEOUT_S, replay_command, start_logged, vigie_command
from vigie.cli.common import guarded, out
from vigie.cli.common import settings as build_settings
from vigie.config import Settings
from vigie.errors import ErrorCode, VigieError
from vigie.events.outcomes import read_outcomes
from vigie.events.payload_log import read_entries
from vigie.features.processor import load_reference, open_store
from vigie.retraining.live_checks import HttpLiveChecker, LiveChecker
from vigie.serving.client import local_predict_key
from vigie.serving.harness import ServiceProcess, free_port

if TYPE_CHECKING:
    from vigie.retraining.simulation import DriftMonth, ServedMonth

#: The payload log counts as flushed when no entry arrived for this long.
SETTLE_S = 3.0
#: Entries or outcomes read per call.
BATCH = 5000
#: Failed sidecar steps tolerated in a row.
MAX_SIDECAR_ERRORS = 50

_log = logging.getLogger(__name__)


@guarded
def simulate(
    year: Annotated[int, typer.Option(help="Year of the data.")] = 2013,
    model: Annotated[str, typer.Option(help="The classifier to run the loop for.")] = (
        "flight_delay"
    ),
    from_month: Annotated[
        int, typer.Option("--from-month", help="First month replayed (trains on the ones before).")
    ] = 3,
    to_month: Annotated[int, typer.Option("--to-month", help="Last month replayed.")] = 12,
    speed: Annotated[
        float, typer.Option(help="Simulated seconds per real second (0: as fast as possible).")
    ] = 0.0,
    days: Annotated[
        int | None, typer.Option(help="Replay only the first DAYS days of each month (a check).")
    ] = None,
    max_rows: Annotated[int, typer.Option("--max-rows", help="Flights per request.")] = 256,
    client_fields: Annotated[
        str,
        typer.Option(
            help="What the replayed requests carry: schedule (the service fills the rest from "
            "its online store, fed by the feature processor) or full (every model input)."
        ),
    ] = "schedule",
    docs: Annotated[Path, typer.Option(help="Where closed-loop.md/.png are written.")] = Path(
        "docs"
    ),
    working_dir: Annotated[
        Path, typer.Option(help="Working folder of the service (relative settings start there).")
    ] = Path(),
) -> None:
    """Replay a year month by month through the service, retrain and promote: the closed loop."""
    from vigie.retraining.simulation import (  # noqa: PLC0415 (the train extra, imported when used)
        SimulationOptions,
        run_simulation,
        start_version,
        write_report,
    )

    began = time.monotonic()
    settings = build_settings()
    options = SimulationOptions(
        model, year, from_month, to_month, days, client_fields=client_fields
    )
    options.months()  # refuse bad months before any work

    def say(text: str) -> None:
        out.print(f"[{time.monotonic() - began:6.0f} s] {text}", highlight=False)

    signal.signal(signal.SIGTERM, _interrupt)  # stop the service child too
    start = start_version(settings, options, say)
    say(f"start version {start[0]}: {start[1]}")
    loop = _ServiceLoop(settings, model, speed, max_rows, working_dir, client_fields)
    try:
        loop.start()
        say(f"service ready at {loop.url}")
        report = run_simulation(settings, options, loop, say, start=start, began=began)
    finally:
        loop.stop()
    page, image = write_report(report, docs)
    out.print(
        f"mean ROC AUC: static {report.mean('static_auc') or float('nan'):.3f}, "
        f"closed loop {report.mean('loop_auc') or float('nan'):.3f}; "
        f"wall time {report.wall_s:.0f} s\n  {page}\n  {image}",
        highlight=False,
    )


def _interrupt(*_: Any) -> None:
    raise KeyboardInterrupt


class _ServiceLoop:
    """The transport side of the loop: service child, replay, logs, sidecar core."""

    def __init__(
        self,
        settings: Settings,
        model: str,
        speed: float,
        max_rows: int,
        working_dir: Path,
        client_fields: str = "schedule",
    ) -> None:
        from vigie.monitoring.sidecar import Monitor  # noqa: PLC0415 (Evidently-heavy import)

        self.settings, self.model = settings, model
        self.speed, self.max_rows, self.working_dir = speed, max_rows, working_dir
        self.client_fields = client_fields
        self.processor: subprocess.Popen[bytes] | None = None
        self.ports = free_port(), free_port()
        self.url = f"http://{settings.host}:{self.ports[0]}"
        self.env = {
            **os.environ,
            "DO_NOT_TRACK": "1",
            "BENTOML_DO_NOT_TRACK": "True",
            "VIGIE_REST_PORT": str(self.ports[0]),
            "VIGIE_GRPC_PORT": str(self.ports[1]),
        }
        self.service: ServiceProcess | None = None
        self.monitor = Monitor(settings, reports=False)
        self._payload_after: str | None = None
        self._outcomes_after: str | None = None
        self._labels: dict[int, float] = {}
        self._seen = {_key(r) for r in self.monitor.results()}
        self._requests = len(self.monitor.retraining_requests)

    def start(self) -> None:
        """Start the feature processor (schedule-only requests) and ``vigie serve`` in its own
        session, and wait until the service is ready."""
        if self.client_fields == "schedule":
            store = open_store(self.settings)
            try:
                load_reference(self.settings, store)
            finally:
                store.close()
            self.processor = start_logged(
                vigie_command("features", "process"),
                self.env,
                self.settings.home / "logs" / "simulate-features.log",
            )
        self.service = ServiceProcess.start(
            self.settings,
            self.settings.home / "logs" / "simulate-serve.log",
            self.env,
            command=vigie_command("serve", "--working-dir", str(self.working_dir)),
            host=self.settings.host,
            rest_port=self.ports[0],
            grpc_port=self.ports[1],
            append_log=True,
            timeout=START_TIMEOUT_S,
            stop_timeout=60.0,
        )

    def stop(self) -> None:
        """Stop the service child (SIGTERM, then kill its process group) and the sidecar core."""
        self.monitor.stop()
        if self.service is not None:
            self.service.stop()
        if self.processor is not None:
            self.processor.send_signal(signal.SIGTERM)
            try:
                self.processor.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.processor.kill()

    def replay(self, first: date, last: date) -> None:
        """Replay ``first``..``last`` (what the log held before, e.g. checks, is skipped)."""
        self._payload_after = _settle(self._entries, self._payload_after)[1]
        command = replay_command(
            first,
            last,
            self.speed,
            self.max_rows,
            "--model",
            self.model,
            "--url",
            self.url,
            "--client-fields",
            self.client_fields,
            "--events" if self.client_fields == "schedule" else "--no-events",
        )
        with (self.settings.home / "logs" / "simulate-replay.log").open("ab") as log:
            code = subprocess.call(command, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        if code != 0:
            raise VigieError(ErrorCode.UNAVAILABLE, f"the replay of {first}..{last} ended {code}")

    def _entries(self, after: str | None) -> list[Any]:
        return read_entries(self.settings, after=after, limit=BATCH)

    def served(self) -> ServedMonth:
        """The predictions served since the replay began, joined with the labels."""
        from vigie.retraining.simulation import LATE_MINUTES, ServedMonth  # noqa: PLC0415 (the train extra, imported when used)

        entries, self._payload_after = _settle(self._entries, self._payload_after)
        self._read_labels()
        scores: list[float] = []
        labels: list[float] = []
        versions: dict[str, int] = {}
        rows = 0
        for entry in entries:
            data = entry.data
            predictions = (data.get("outputs") or {}).get("probability")
            keys = data.get("row_ids")
            if data.get("model") != self.model or not isinstance(predictions, list):
                continue
            version = str(data.get("version"))
            versions[version] = versions.get(version, 0) + len(predictions)
            rows += len(predictions)
            if not isinstance(keys, list) or len(keys) != len(predictions):
                continue
            for key, score in zip(keys, predictions, strict=True):
                delay = self._labels.get(int(key))
                if delay is not None and score is not None:
                    scores.append(float(score))
                    labels.append(1.0 if delay > LATE_MINUTES else 0.0)
        return ServedMonth(scores, labels, rows, versions)

    def _read_labels(self) -> None:
        skipped: list[str] = []
        while True:
            skipped.clear()
            events = read_outcomes(
                self.settings,
                after=self._outcomes_after,
                limit=BATCH,
                on_skip=lambda offset, _why: skipped.append(offset),
            )
            for event in events:
                self._labels[int(event.flight_key)] = float(event.arr_delay_min)
            offsets = [e.offset for e in events] + skipped
            if not offsets:
                return
            self._outcomes_after = max(offsets, key=_offset_key)

    def analyse(self) -> DriftMonth:
        """Drain the logs into the sidecar core and close its open windows."""
        from vigie.retraining.simulation import DriftMonth  # noqa: PLC0415 (the train extra, imported when used)

        errors = self._tolerant(self.monitor.drain) + self._tolerant(
            self.monitor.close_open_windows
        )
        fresh = [
            r
            for r in self.monitor.results()
            if r.get("model") == self.model and _key(r) not in self._seen
        ]
        self._seen.update(_key(r) for r in fresh)
        shares = [float(r["drift"]["share_drifted"]) for r in fresh]
        requests = len(self.monitor.retraining_requests) - self._requests
        self._requests = len(self.monitor.retraining_requests)
        return DriftMonth(
            windows=len(fresh),
            drifted=sum(1 for r in fresh if r["drift"]["dataset_drift"]),
            share=sum(shares) / len(shares) if shares else None,
            requests=requests,
            errors=errors,
        )

    def _tolerant(self, step: Any) -> int:
        """Run a sidecar step again after a failure of its gauges; returns the failures.

        A window whose feature has no drift score (a feature missing in the whole window)
        makes the sidecar's Prometheus gauges raise TypeError after the window's result and
        any retraining request were written: the analysis itself is complete, so the loop
        goes on and the report counts the failure.
        """
        for failures in range(MAX_SIDECAR_ERRORS):
            try:
                step()
            except TypeError as err:
                _log.warning("sidecar step failed (%s); going on", err)
                continue
            return failures
        raise VigieError(ErrorCode.INTERNAL, f"the sidecar failed {MAX_SIDECAR_ERRORS} times")

    def checker(self) -> LiveChecker | None:
        """Live checks of promotions against the service child."""
        return HttpLiveChecker(self.url, local_predict_key(self.settings))


def _key(result: dict[str, Any]) -> tuple[str, str, str]:
    return (str(result.get("model")), str(result.get("version")), str(result.get("window_id")))


def _offset_key(offset: str) -> tuple[int, ...]:
    return tuple(int(part) for part in offset.replace("-", ":").split(":"))


def _settle(read: Any, after: str | None = None) -> tuple[list[Any], str | None]:
    """Everything after ``after`` once the log stops growing (the service flushes late)."""
    found: list[Any] = []
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < SETTLE_S:
        batch = read(after)
        if batch:
            found.extend(batch)
            after = batch[-1].offset
            quiet_since = time.monotonic()
        else:
            time.sleep(0.5)
    return found, after
