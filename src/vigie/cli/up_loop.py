"""The retraining side of ``vigie up``: drift request -> retraining job -> promotion.

While ``vigie up`` serves and replays, :class:`RetrainingLoop` watches the drift sidecar's
retraining request log. When a request arrives for a model it runs, as child processes,
the same commands an operator or a scheduler would:

1. ``vigie retrain --model M --from-requests --as-of D`` — consumes the pending requests
   exactly once and registers a challenger as ``candidate``. ``D`` is the last day whose
   labels have all arrived: the day before the latest outcome read from the outcome log
   (New York time), so the run never trains on a day the replay has not reached;
2. ``vigie promote M VERSION --url <the service>`` — gates, ``staging``, smoke test, short
   canary load test, ``production``, then waits until the running service answers with the
   new version (its hot reload) and smoke-tests it; a failed check rolls back.

Each step is printed as it ends and kept for the summary. The commands audit themselves;
their output goes to ``<home>/logs/retrain.log`` and ``promote.log``.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from vigie.cli.children import vigie_command
from vigie.config import Settings
from vigie.events.outcomes import read_outcomes
from vigie.events.retraining_requests import read_requests, requests_dir

#: The time zone of the flights' calendar days (the warehouse's ``flight_date``).
LOCAL = ZoneInfo("America/New_York")
#: Outcome events read per call.
BATCH = 5000
#: Seconds between two looks at the request log.
POLL_S = 2.0
#: Seconds a child command may run before it is stopped.
CHILD_TIMEOUT_S = 900.0


@dataclass
class LoopStep:
    """One retraining and its promotion, as the summary shows it."""

    model: str
    requests: int
    as_of: date | None
    retraining: str
    version: str | None = None
    promotion: str = "-"
    promoted: bool = False

    def line(self) -> str:
        """One line for the console."""
        head = f"{self.model}: {self.requests} drift request(s)"
        when = f" -> retraining as of {self.as_of}" if self.as_of else " -> retraining"
        return f"{head}{when}: {self.retraining}; promotion: {self.promotion}"


@dataclass
class RetrainingLoop:
    """Watches the request log and runs retraining then promotion for each model asked.

    Attributes:
        settings: Home, outcome log, request log.
        service_url: The running service, for the promotion's live checks.
        env: Environment of the child commands.
        say: Prints one line.
        retrain_args: More options of every ``vigie retrain`` (e.g. ``--evaluation-days``).
        steps: What was done, in order.
    """

    settings: Settings
    service_url: str
    env: Mapping[str, str]
    say: Callable[[str], None]
    retrain_args: tuple[str, ...] = ()
    steps: list[LoopStep] = field(default_factory=list)
    _requests_after: str | None = None
    _outcomes_after: str | None = None
    _latest_label: datetime | None = None
    _children: set[subprocess.Popen[bytes]] = field(default_factory=set)
    _workers: dict[str, threading.Thread] = field(default_factory=dict)
    _again: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _labels_lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, finish: threading.Event, abort: threading.Event) -> None:
        """The body of the loop's thread: poll until ``finish`` is set, then let the runs in
        progress end (promotion included); ``abort`` starts nothing more."""
        while not finish.is_set() and not abort.is_set():
            self.poll(abort)
            finish.wait(POLL_S)
        self.wait()

    def step(self, stop: threading.Event) -> int:
        """Serve every model with new requests and wait until done; returns the models."""
        asked = self.poll(stop)
        self.wait()
        return asked

    def poll(self, stop: threading.Event) -> int:
        """Start serving each model with new requests; returns how many were asked.

        Each model has its own worker thread (their retrainings hold separate locks), so a
        model never waits for another. A model asked again while its worker runs is served
        once more when that run ends: the job consumes every pending request of the model.
        """
        found, self._requests_after = read_requests(
            requests_dir(self.settings), self._requests_after
        )
        counts: dict[str, int] = {}
        for request in found:
            counts[request.model] = counts.get(request.model, 0) + 1
        if not counts or stop.is_set():
            return 0
        as_of = self.labelled_through()
        with self._lock:
            for model, requests in sorted(counts.items()):
                if model in self._workers:  # busy: its worker serves it again before it ends
                    self._again[model] = self._again.get(model, 0) + requests
                    continue
                worker = threading.Thread(
                    target=self._work,
                    args=(model, requests, stop, as_of),
                    name=f"retrain-{model}",
                )
                self._workers[model] = worker
                worker.start()
        return len(counts)

    def wait(self) -> None:
        """Until every worker has ended."""
        while True:
            with self._lock:
                running = list(self._workers.values())
            if not running:
                return
            for worker in running:
                worker.join()

    def _work(self, model: str, requests: int, stop: threading.Event, as_of: date | None) -> None:
        """Serve ``model`` until no request came meanwhile; leaves ``_workers`` under the lock
        that :meth:`poll` checks, so a request is either served again here or starts anew."""
        try:
            while not stop.is_set():
                self._serve(model, requests, stop, as_of)
                with self._lock:
                    requests = self._again.pop(model, 0)
                    if not requests:
                        del self._workers[model]
                        return
                as_of = self.labelled_through()
        finally:
            with self._lock:
                self._workers.pop(model, None)

    def stop(self) -> None:
        """Interrupt the running child commands (a killed retraining registers nothing)."""
        with self._lock:
            running = [c for c in self._children if c.poll() is None]
        for child in running:
            child.terminate()

    def labelled_through(self) -> date | None:
        """The last day whose flights have all had their outcome (day before the latest)."""
        with self._labels_lock:
            return self._labelled_through()

    def _labelled_through(self) -> date | None:
        while True:
            events = read_outcomes(self.settings, after=self._outcomes_after, limit=BATCH)
            if not events:
                break
            self._outcomes_after = events[-1].offset
            latest = max(e.observed_at for e in events)
            if self._latest_label is None or latest > self._latest_label:
                self._latest_label = latest
        if self._latest_label is None:
            return None
        return self._latest_label.astimezone(LOCAL).date() - timedelta(days=1)

    def _serve(self, model: str, requests: int, stop: threading.Event, as_of: date | None) -> None:
        step = LoopStep(model, requests, as_of, retraining="running")
        self.say(f"[bold]drift request[/] for {model}: retraining as of {as_of or 'latest'}")
        command = ["retrain", "--model", model, "--from-requests", "--json", *self.retrain_args]
        if as_of is not None:
            command += ["--as-of", as_of.isoformat()]
        code, output, errors = self._command(command, "retrain.log")
        run = _json(output)
        if code != 0 or run is None:
            step.retraining = f"failed (exit {code}: {_last_line(errors)}; logs/retrain.log)"
        else:
            step.retraining = _retraining_text(run)
            step.version = run.get("version") if run.get("status") == "trained" else None
        if step.version is not None and not stop.is_set():
            self.say(f"{model}: {step.retraining}; promoting v{step.version}")
            report_path = self.settings.home / "logs" / f"promotion-{model}-{step.version}.json"
            code, _, errors = self._command(
                [
                    "promote",
                    model,
                    step.version,
                    "--url",
                    self.service_url,
                    "--load-seconds",
                    "3",
                    "--concurrency",
                    "2",
                    "--report",
                    str(report_path),
                    "--reason",
                    "vigie up: drift request",
                ],
                "promote.log",
            )
            step.promotion, step.promoted = _promotion_text(report_path, code, errors)
        self.steps.append(step)
        self.say(step.line())

    def _command(self, arguments: list[str], log: str) -> tuple[int, bytes, bytes]:
        """Run ``vigie ARGUMENTS``; returns its status, stdout and stderr (both also
        appended to ``logs/<log>``)."""
        logs = self.settings.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        child = subprocess.Popen(
            vigie_command(*arguments),
            env=dict(self.env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        with self._lock:
            self._children.add(child)
        try:
            output, errors = child.communicate(timeout=CHILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            output, errors = child.communicate()
        finally:
            with self._lock:
                self._children.discard(child)
        with self._lock, (logs / log).open("ab") as handle:
            handle.write(f"$ vigie {' '.join(arguments)}\n".encode())
            handle.write(errors)
            handle.write(output)
        return child.returncode, output, errors


def _json(output: bytes) -> dict[str, Any] | None:
    text = output.decode(errors="replace")
    start = text.find("{")
    if start < 0:
        return None
    try:
        found = json.loads(text[start:])
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def _retraining_text(run: Mapping[str, Any]) -> str:
    status = str(run.get("status"))
    if status != "trained":
        return f"{status} ({run.get('message')})"
    lineage = run.get("lineage") or {}
    challenger = ((lineage.get("challenger") or {}).get("metrics")) or {}
    champion = (((lineage.get("evaluation") or {}).get("champion") or {}).get("metrics")) or {}
    metric = "roc_auc" if "roc_auc" in challenger else "mae"
    mine, theirs = challenger.get(metric), champion.get(metric)
    text = f"registered v{run.get('version')} as candidate"
    if isinstance(mine, int | float):
        text += f" ({metric} {mine:.3f}"
        text += f" vs champion {theirs:.3f})" if isinstance(theirs, int | float) else ")"
    return text


def _last_line(errors: bytes) -> str:
    lines = [line.strip() for line in errors.decode(errors="replace").splitlines()]
    found = [line for line in lines if line]
    return found[-1][:300] if found else "no message"


def _promotion_text(report_path: Path, code: int, errors: bytes) -> tuple[str, bool]:
    try:
        report = json.loads(report_path.read_text())
    except (OSError, ValueError):
        return f"failed (exit {code}: {_last_line(errors)}; logs/promote.log)", False
    status = str(report.get("status"))
    steps = [s["name"] for s in report.get("steps", []) if s.get("outcome") == "pass"]
    if report.get("error") is None:
        return f"{status}: {', '.join(steps)}", True
    message = (report.get("error") or {}).get("message", "")
    return f"{status}: {message}", False
