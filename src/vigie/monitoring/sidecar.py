"""The drift sidecar's core: payload log + delayed outcomes in, window results out.

:class:`Monitor` is driven by :meth:`Monitor.poll` (the HTTP shell in
``vigie.monitoring.web`` calls it in a loop, tests call it directly). Each poll:

1. reads new payload-log entries and adds their rows to the open window of their model
   version (the version's reference is loaded from the registry on first sight);
2. reads new outcome events and joins them to the predictions of closed windows (labels
   arrive late: a window's quality is recomputed whenever some of its labels arrive);
3. closes windows that are full (``VIGIE_MONITOR_WINDOW_ROWS``) or whose time span has
   passed (``VIGIE_MONITOR_WINDOW_SECONDS``), analyses them (exact drift of every feature
   and of the prediction, prediction statistics, quality once labelled), writes each
   result as JSON under ``<home>/monitoring/results/``, updates the Prometheus metrics,
   queues the Evidently report, and emits a retraining request when dataset drift has
   persisted for ``VIGIE_MONITOR_DRIFT_PERSIST_WINDOWS`` consecutive windows.

Bad input (an unreadable entry, an entry without model, version or outputs, a feature
missing from an entry, a version whose reference does not load or match, a duplicate or
unreadable outcome) is counted by kind, shown on the pages and in the metrics, and
skipped; the sidecar never stops analysing the rest.

State (read offset, window numbers, drift streaks) is saved after every poll to
``<home>/monitoring/state.json``; after a restart the sidecar re-reads the payload log from
just before its oldest open window, so no row is lost or counted twice. Outcomes are
re-read from the start of their log at start-up (labels are kept in memory).
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vigie.config import Settings
from vigie.errors import VigieError
from vigie.events.outcomes import OutcomeEvent, read_outcomes
from vigie.events.payload_entry import PayloadEntry
from vigie.events.payload_log import read_entries
from vigie.events.retraining_requests import (
    RequestLog,
    RetrainingRequest,
    read_all,
    requests_dir,
)
from vigie.events.segments import OnSkip
from vigie.governance.audit import AuditLog, Outcome
from vigie.monitoring.drift import DriftResult, detect_drift
from vigie.monitoring.metrics import QUANTILES, SidecarMetrics
from vigie.monitoring.reference import VersionReference, load_reference
from vigie.monitoring.reports import LABELLED_SHARE_FOR_QUALITY, ReportJob, ReportPublisher
from vigie.monitoring.windows import Window, quality

_log = logging.getLogger(__name__)

#: The rows of a window kept for its Evidently report (features, prediction, label).
REPORT_ROWS_FILE = "rows.parquet"

#: Entries read per poll, at most.
READ_BATCH = 5000

#: Closed windows per version kept for the delayed label join.
LABEL_WINDOWS = 200

#: Share of a window's rows that must be labelled before its quality is exported.
MIN_COVERAGE_FOR_METRICS = 0.5

#: Kinds of bad input, as counted in ``vigie_sidecar_bad_input_total``.
BAD_INPUT_KINDS = (
    "corrupt_entry",
    "missing_feature",
    "empty_window",
    "reference_mismatch",
    "duplicate_outcome",
    "corrupt_outcome",
    "unknown_flight",
)

#: How long a version whose reference failed to load is left alone before a new try.
_RETRY_REFERENCE_S = 60.0


@dataclass
class _VersionState:
    """What the sidecar keeps per model version."""

    reference: VersionReference
    next_number: int = 1
    consecutive: int = 0
    requested: bool = False
    closed_through: str | None = None
    open: Window | None = None
    open_after: str | None = None
    closed: deque[Window] = field(default_factory=lambda: deque(maxlen=LABEL_WINDOWS))
    streak: list[dict[str, Any]] = field(default_factory=list)


#: Builds the reference of (settings, model, version).
ReferenceLoader = Callable[[Settings, str, str], VersionReference]

#: Reads outcome events: (settings, after, limit, on_skip) -> events in order.
OutcomeReader = Callable[[Settings, str | None, int, OnSkip], Sequence[OutcomeEvent]]


class Monitor:
    """The drift sidecar's analysis loop state.

    Args:
        settings: Window sizes, drift rule, folders.
        outcome_reader: Reads outcome events after an offset (default: the outcome log).
        reference_loader: Builds a version's reference (default: from the registry).
        reports: Publish Evidently reports (default: ``settings.monitor_reports``).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        outcome_reader: OutcomeReader | None = None,
        reference_loader: ReferenceLoader | None = None,
        reports: bool | None = None,
    ) -> None:
        self.settings = settings
        self.folder = settings.monitoring_dir
        self.metrics = SidecarMetrics()
        self.bad_input: Counter[str] = Counter(dict.fromkeys(BAD_INPUT_KINDS, 0))
        self.labels: dict[int, float] = {}
        self.retraining_requests: list[dict[str, Any]] = []
        self.entries_read = 0
        self.outcomes_read = 0
        self.started = time.time()
        self.last_poll: float | None = None
        self.last_analysis: float | None = None
        self.last_error: str | None = None
        self._outcome_reader = outcome_reader or _default_outcome_reader
        self._reference_loader = reference_loader or load_reference
        self._versions: dict[tuple[str, str], _VersionState] = {}
        self._failed: dict[tuple[str, str], float] = {}
        self._awaiting: dict[int, list[Window]] = {}
        self._predicted: set[int] = set()
        self._dirty: set[int] = set()
        self._by_id: dict[int, tuple[_VersionState, Window]] = {}
        self._payload_after: str | None = None
        self._outcomes_after: str | None = None
        self._prev_offset: str | None = None
        self._audit = AuditLog(settings.audit_log_path)
        self._requests = RequestLog(requests_dir(settings))
        self._request_seq = 0
        self._writer = f"sidecar-{socket.gethostname()}-{os.getpid()}"
        publish = settings.monitor_reports if reports is None else reports
        self._publisher = (
            ReportPublisher(self.folder / "workspace", self._report_outcome) if publish else None
        )
        self._saved_versions: dict[str, dict[str, Any]] = {}
        self._load_state()
        self.retraining_requests = [e.data for e in read_requests(settings)]
        self._restore_gauges()

    def _restore_gauges(self) -> None:
        """After a restart, show the latest analysed window of each version again."""
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        labelled: dict[tuple[str, str], dict[str, Any]] = {}
        for result in self.results():
            key = (result["model"], result["version"])
            latest[key] = result
            coverage = (result.get("quality") or {}).get("label_coverage", 0.0)
            if coverage >= MIN_COVERAGE_FOR_METRICS:
                labelled[key] = result
        for model, version in latest:
            self._state(model, version)  # loads the reference: gate gauges, no cold start
        for result in latest.values():
            try:
                self.metrics.record_window(result, count=False)
            except (KeyError, TypeError):
                _log.warning("stored result %s is unreadable", result.get("window_id"))
        for result in labelled.values():
            self.metrics.record_quality(result)
        analysed = [r.get("analysed_at") for r in latest.values() if r.get("analysed_at")]
        if analysed:
            self.last_analysis = max(datetime.fromisoformat(str(a)).timestamp() for a in analysed)
            self.metrics.last_analysis.set(self.last_analysis)

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Start the report publisher, with the reports a previous run left waiting."""
        if self._publisher is not None:
            self._requeue_reports()
            self._publisher.start()

    def stop(self) -> None:
        """Finish queued reports, save the state."""
        if self._publisher is not None:
            self._publisher.stop()
        self._save_state()

    def reports_idle(self) -> bool:
        """Whether every queued Evidently report has been published."""
        return self._publisher is None or self._publisher.idle()

    # -- one poll --------------------------------------------------------------------

    def poll(self, *, now: float | None = None) -> int:
        """Read what is new, close and analyse due windows. Returns entries + outcomes read."""
        now = time.time() if now is None else now
        read = 0
        source = "payload"
        try:
            skipped: list[str] = []
            entries = read_entries(
                self.settings,
                after=self._payload_after,
                limit=READ_BATCH,
                on_skip=lambda offset, _why: skipped.append(offset),
            )
            for entry in entries:
                self._take(entry)
            self._skipped("corrupt_entry", skipped, "payload")
            read += len(entries) + len(skipped)
            source, skipped = "outcomes", []
            outcomes = self._outcome_reader(
                self.settings,
                self._outcomes_after,
                READ_BATCH,
                lambda offset, _why: skipped.append(offset),
            )
            for event in outcomes:
                self._label(event)
            self._skipped("corrupt_outcome", skipped, "outcomes")
            read += len(outcomes) + len(skipped)
        except VigieError as err:
            self.last_error = err.message
            self.metrics.read_errors.labels(source).inc()
            _log.warning("sidecar read of the %s failed: %s", source, err.message)
            return read
        self.last_error = None
        self._close_idle(now)
        self._refresh_quality()
        self.last_poll = now
        self.metrics.last_poll.set(now)
        for state in self._versions.values():
            self._set_lag(state, now)
            self._set_coverage(state, now)
        self._save_state()
        return read

    def drain(self, *, now: float | None = None, max_polls: int = 10_000) -> None:
        """Poll until nothing new is read (tests, the bench and one-shot runs)."""
        for _ in range(max_polls):
            if self.poll(now=now) == 0:
                return

    def close_open_windows(self) -> None:
        """Close and analyse every open window with rows (end of a replay, shutdown)."""
        for state in self._versions.values():
            if state.open is not None and state.open.rows:
                self._close(state, "flush")
        self._refresh_quality()
        self._save_state()

    # -- entries ---------------------------------------------------------------------

    def _take(self, entry: PayloadEntry) -> None:
        self.entries_read += 1
        self.metrics.entries_read.inc()
        self._payload_after = entry.offset
        prev, self._prev_offset = self._prev_offset, entry.offset
        data = entry.data
        model, version = data.get("model"), data.get("version")
        outputs, inputs = data.get("outputs"), data.get("inputs")
        if not (isinstance(model, str) and version is not None and isinstance(outputs, dict)):
            self._bad("corrupt_entry")
            return
        if not isinstance(inputs, dict):
            inputs = {}
        state = self._state(model, str(version))
        if state is None:
            self._bad("reference_mismatch")
            return
        if state.closed_through is not None and _offset_key(entry.offset) <= _offset_key(
            state.closed_through
        ):
            return  # already in a closed window (re-read after a restart)
        predictions = outputs.get(state.reference.output)
        if not isinstance(predictions, list) or not predictions:
            self._bad("empty_window" if predictions == [] else "corrupt_entry")
            return
        keys = _row_keys(data.get("row_ids"), len(predictions))
        self._predicted.update(k for k in keys if k is not None)
        missing = [n for n in state.reference.kinds if not isinstance(inputs.get(n), list)]
        if missing:
            self._bad("missing_feature", len(missing))
        moment = str(data.get("time") or data.get("logged_at") or "")
        start = 0
        while start < len(predictions):
            window = self._open_window(state, prev)
            room = self.settings.monitor_window_rows - window.rows
            stop = min(len(predictions), start + room)
            window.add(
                {n: v[start:stop] for n, v in inputs.items() if isinstance(v, list)},
                predictions[start:stop],
                keys[start:stop],
                time=moment,
                offset=entry.offset,
            )
            window.note_enrichment(data.get("enrichment"), stop - start)
            start = stop
            if window.rows >= self.settings.monitor_window_rows:
                self._close(state, "count")
            elif window.time_span_seconds() >= self.settings.monitor_window_seconds:
                self._close(state, "time")

    def _skipped(self, kind: str, offsets: list[str], source: str) -> None:
        """Count unreadable lines and move the read offset past them."""
        if not offsets:
            return
        self._bad(kind, len(offsets))
        last = max(offsets, key=_offset_key)
        current = self._payload_after if source == "payload" else self._outcomes_after
        if current is None or _offset_key(last) > _offset_key(current):
            if source == "payload":
                self._payload_after = last
            else:
                self._outcomes_after = last

    def _open_window(self, state: _VersionState, prev: str | None) -> Window:
        if state.open is None:
            state.open = Window(
                state.reference,
                state.next_number,
                self.settings.monitor_report_rows,
                self.settings.seed,
            )
            state.open_after = prev
            state.next_number += 1
        return state.open

    def _state(self, model: str, version: str) -> _VersionState | None:
        key = (model, version)
        state = self._versions.get(key)
        if state is not None:
            return state
        failed_at = self._failed.get(key)
        if failed_at is not None and time.time() - failed_at < _RETRY_REFERENCE_S:
            return None
        try:
            reference = self._reference_loader(self.settings, model, version)
        except (VigieError, OSError, ValueError) as err:
            message = err.message if isinstance(err, VigieError) else str(err)
            _log.warning("cannot monitor %s version %s: %s", model, version, message)
            self._failed[key] = time.time()
            return None
        saved = self._saved_versions.get(f"{model}/{version}", {})
        state = _VersionState(
            reference,
            next_number=int(saved.get("next_number", 1)),
            consecutive=int(saved.get("consecutive", 0)),
            requested=bool(saved.get("requested", False)),
            closed_through=saved.get("closed_through"),
        )
        for bound in reference.gates:
            self.metrics.quality_gate.labels(model, bound.metric, bound.bound).set(bound.value)
        self._versions[key] = state
        return state

    def _close_idle(self, now: float) -> None:
        """Close time windows whose span has passed even though no entry came since."""
        for state in self._versions.values():
            window = state.open
            if window is None or window.last_time is None:
                continue
            since_first = now - datetime.fromisoformat(window.first_time or "").timestamp()
            if (
                since_first >= self.settings.monitor_window_seconds
                and window.rows >= self.settings.monitor_min_window_rows
            ):
                self._close(state, "time")

    # -- analysis --------------------------------------------------------------------

    def _close(self, state: _VersionState, closed_by: str) -> None:
        window = state.open
        assert window is not None
        state.open, state.open_after = None, None
        window.close(closed_by)
        state.closed_through = window.last_offset
        reference = state.reference
        drift = detect_drift(
            reference.profile, window.stats, drift_share=self.settings.monitor_drift_share
        )
        prediction_drift = detect_drift(reference.prediction_profile, window.prediction_stats)
        state.consecutive = state.consecutive + 1 if drift.dataset_drift else 0
        if not drift.dataset_drift:
            state.requested, state.streak = False, []
        result = self._result(state, window, drift, prediction_drift)
        if drift.dataset_drift:
            state.streak.append(_evidence(result))
        if state.consecutive >= self.settings.monitor_drift_persist_windows and not state.requested:
            self._request_retraining(state, result)
            result["retraining_requested"] = True
        state.closed.append(window)
        self._by_id[id(window)] = (state, window)
        self._register_awaiting(window)
        result["quality"] = self._quality(state, window)
        self._write_result(result)
        self.metrics.record_window(result)
        if result["quality"] and result["quality"]["label_coverage"] >= MIN_COVERAGE_FOR_METRICS:
            self.metrics.record_quality(result)
        self.last_analysis = time.time()
        self.metrics.last_analysis.set(self.last_analysis)
        self._submit_report(state, window, result)
        _log.info(
            "%s v%s window %s: %d rows, %d/%d features drifted%s",
            reference.model,
            reference.version,
            window.window_id,
            window.rows,
            drift.drifted_count,
            len(drift.features),
            " (dataset drift)" if drift.dataset_drift else "",
        )

    def _result(
        self,
        state: _VersionState,
        window: Window,
        drift: DriftResult,
        prediction_drift: DriftResult,
    ) -> dict[str, Any]:
        predictions = window.predictions
        finite = predictions[~np.isnan(predictions)]
        quantiles = {
            q: (float(np.quantile(finite, float(q))) if len(finite) else None) for q in QUANTILES
        }
        pdrift = prediction_drift.features[0]
        drift_dict = drift.to_dict()
        drift_dict["columns_count"] = len(drift.features)
        return {
            "model": state.reference.model,
            "version": state.reference.version,
            "window_id": window.window_id,
            "kind": "time" if window.closed_by == "time" else "count",
            "closed_by": window.closed_by,
            "start": window.first_time,
            "end": window.last_time,
            "first_offset": window.first_offset,
            "last_offset": window.last_offset,
            "analysed_at": _now_iso(),
            "rows": window.rows,
            "reference_rows": state.reference.profile.rows,
            "features": window.freshness(),
            "drift": drift_dict,
            "prediction": {
                "mean": float(finite.mean()) if len(finite) else None,
                "quantiles": quantiles,
                "drift": {
                    "stattest": pdrift.stattest,
                    "score": pdrift.score,
                    "threshold": pdrift.threshold,
                    "drifted": pdrift.drifted,
                },
            },
            "quality": None,
            "bad_input": {"missing_feature": int(sum(window.missing_features.values()))},
            "missing_features": dict(window.missing_features),
            "consecutive_drift": state.consecutive,
            "retraining_requested": False,
            "report_html": None,
            "report_json": None,
        }

    def _quality(self, state: _VersionState, window: Window) -> dict[str, Any] | None:
        predictions, labels = window.labelled(self.labels)
        window.labelled_rows = len(labels)
        metrics = quality(state.reference.task, predictions, labels)
        if metrics is None:
            return None
        gates = {}
        passed = True
        for bound in state.reference.gates:
            if bound.metric in metrics:
                gates[bound.metric] = {bound.bound: bound.value}
                passed = passed and bound.passed(metrics[bound.metric])
        return {
            "labelled_rows": len(labels),
            "label_coverage": len(labels) / window.rows if window.rows else 0.0,
            "task": state.reference.task.value,
            "metrics": metrics,
            "gates": gates,
            "passed": passed,
        }

    # -- labels ----------------------------------------------------------------------

    def _label(self, event: OutcomeEvent) -> None:
        self.outcomes_read += 1
        self.metrics.outcomes_read.inc()
        self._outcomes_after = event.offset
        key = int(event.flight_key)
        if key in self.labels:
            self._bad("duplicate_outcome")
            return
        self.labels[key] = float(event.arr_delay_min)
        if key not in self._predicted:
            self._bad("unknown_flight")  # kept: its prediction may still come
        for window in self._awaiting.pop(key, []):
            self._dirty.add(id(window))

    def _register_awaiting(self, window: Window) -> None:
        for key in window.keys.tolist():
            if key >= 0 and key not in self.labels:
                self._awaiting.setdefault(key, []).append(window)

    def _refresh_quality(self) -> None:
        """Recompute the quality of closed windows some of whose labels just arrived."""
        dirty, self._dirty = self._dirty, set()
        for window_id in dirty:
            found = self._by_id.get(window_id)
            if found is None:
                continue
            state, window = found
            if window not in state.closed:  # fell out of the label horizon
                self._by_id.pop(window_id, None)
                continue
            path = self._result_path(state.reference.model, state.reference.version, window)
            result = _read_json(path)
            if result is None:
                continue
            before = result.get("quality") or {}
            result["quality"] = self._quality(state, window)
            self._write_result(result)
            coverage = (result["quality"] or {}).get("label_coverage", 0.0)
            if coverage >= MIN_COVERAGE_FOR_METRICS and window is self._newest_labelled(state):
                self.metrics.record_quality(result)
            if (
                coverage >= LABELLED_SHARE_FOR_QUALITY
                and before.get("label_coverage", 0.0) < LABELLED_SHARE_FOR_QUALITY
            ):
                self._submit_report(state, window, result)  # again, now with quality

    def _newest_labelled(self, state: _VersionState) -> Window | None:
        for window in reversed(state.closed):
            if window.rows and window.labelled_rows / window.rows >= MIN_COVERAGE_FOR_METRICS:
                return window
        return None

    # -- outputs ---------------------------------------------------------------------

    def _result_path(self, model: str, version: str, window: Window | str) -> Path:
        window_id = window if isinstance(window, str) else window.window_id
        return self.folder / "results" / model / version / f"{window_id}.json"

    def report_folder(self, model: str, version: str, window_id: str) -> Path:
        """Where the Evidently report of a window goes."""
        return self.folder / "reports" / model / version / window_id

    def _write_result(self, result: Mapping[str, Any]) -> None:
        path = self._result_path(result["model"], result["version"], result["window_id"])
        _write_json(path, result)

    def _submit_report(self, state: _VersionState, window: Window, result: dict[str, Any]) -> None:
        """Keep the window's report rows beside its result, then queue its report."""
        if self._publisher is None:
            return
        model, version, window_id = result["model"], result["version"], result["window_id"]
        rows = self.report_folder(model, version, window_id) / REPORT_ROWS_FILE
        rows.parent.mkdir(parents=True, exist_ok=True)
        temporary = rows.with_suffix(".tmp")
        window.report_frame(self.labels).to_parquet(temporary, index=False)
        os.replace(temporary, rows)
        self._queue_report(state.reference, model, version, window_id)

    def _queue_report(
        self, reference: VersionReference, model: str, version: str, window_id: str
    ) -> None:
        assert self._publisher is not None
        folder = self.report_folder(model, version, window_id)

        def done(ok: bool) -> None:
            if not ok:
                return
            path = self._result_path(model, version, window_id)
            current = _read_json(path)
            if current is not None:
                current["report_html"] = "report.html"
                current["report_json"] = "snapshot.json"
                _write_json(path, current)

        try:
            frame = pd.read_parquet(folder / REPORT_ROWS_FILE)
        except (OSError, ValueError) as err:
            _log.warning("no report rows for %s v%s window %s: %s", model, version, window_id, err)
            return
        self._publisher.submit(
            ReportJob(reference, frame, folder, f"{model} v{version} window {window_id}", done)
        )

    def _requeue_reports(self) -> None:
        """After a restart, queue the reports that were still waiting when it stopped."""
        if self._publisher is None:
            return
        for result in self.results():
            model, version, window_id = result["model"], result["version"], result["window_id"]
            if result.get("report_html"):
                continue
            if not (self.report_folder(model, version, window_id) / REPORT_ROWS_FILE).is_file():
                continue
            state = self._state(model, version)
            if state is not None:
                self._queue_report(state.reference, model, version, window_id)

    def _report_outcome(self, outcome: str) -> None:
        self.metrics.reports.labels(outcome).inc()

    def _request_retraining(self, state: _VersionState, result: Mapping[str, Any]) -> None:
        reference = state.reference
        features = _top_features(result)
        request = {
            "request_id": uuid.uuid4().hex,
            "model": reference.model,
            "version": reference.version,
            "requested_at": _now_iso(),
            "reason": "drift",
            "rule": {
                "consecutive_windows": self.settings.monitor_drift_persist_windows,
                "drift_share": self.settings.monitor_drift_share,
            },
            "windows": [e["window_id"] for e in state.streak],
            "evidence": list(state.streak),
            "features": features,
            "seq": self._request_seq,
            "writer": self._writer,
            "logged_at": _now_iso(),
        }
        self._request_seq += 1
        self._requests.append(request)
        state.requested = True
        self.retraining_requests.append(request)
        self.metrics.retraining_requests.labels(reference.model).inc()
        self._audit.append(
            self.settings.actor,
            "monitoring.retraining_request",
            f"{reference.model}:{reference.version}",
            Outcome.SUCCESS,
            details={
                "request_id": request["request_id"],
                "windows": request["windows"],
                "features": [f["name"] for f in features],
            },
        )
        _log.warning(
            "drift persisted over %d windows of %s v%s: retraining requested (%s)",
            state.consecutive,
            reference.model,
            reference.version,
            request["request_id"],
        )

    def _bad(self, kind: str, count: int = 1) -> None:
        self.bad_input[kind] += count
        self.metrics.bad_input.labels(kind).inc(count)

    def _set_coverage(self, state: _VersionState, now: float) -> None:
        """Label coverage of the newest window old enough for its labels to have arrived."""
        horizon = now - self.settings.monitor_label_delay_s
        for window in reversed(state.closed):
            if window.last_time and datetime.fromisoformat(window.last_time).timestamp() <= horizon:
                coverage = window.labelled_rows / window.rows if window.rows else 0.0
                reference = state.reference
                self.metrics.label_coverage.labels(reference.model, reference.version).set(coverage)
                return

    def _set_lag(self, state: _VersionState, now: float) -> None:
        newest = state.open.last_time if state.open is not None else None
        if newest is None and state.closed:
            newest = state.closed[-1].last_time
        if newest:
            lag = max(0.0, now - datetime.fromisoformat(newest).timestamp())
            self.metrics.window_lag.labels(state.reference.model, state.reference.version).set(lag)

    # -- reading results back (pages, API) -------------------------------------------

    def results(self) -> list[dict[str, Any]]:
        """Every stored window result, by model, version and window."""
        root = self.folder / "results"
        found = []
        for path in sorted(root.glob("*/*/*.json")):
            result = _read_json(path)
            if result is not None:
                found.append(result)
        return found

    def result(self, model: str, version: str, window_id: str) -> dict[str, Any] | None:
        """One stored window result, or None."""
        if not all(_safe_name(part) for part in (model, version, window_id)):
            return None
        return _read_json(self._result_path(model, version, window_id))

    def health(self, *, now: float | None = None) -> dict[str, Any]:
        """The sidecar's health for the index page and ``/health``."""
        now = time.time() if now is None else now
        if self.last_poll is None:
            status = "starting"
        elif now - self.last_poll > self.settings.monitor_stall_seconds:
            status = "stalled"
        elif self.last_error:
            status = "degraded"
        else:
            status = "ok"
        return {
            "status": status,
            "last_poll": _iso(self.last_poll),
            "last_analysis": _iso(self.last_analysis),
            "last_error": self.last_error,
            "entries_read": self.entries_read,
            "outcomes_read": self.outcomes_read,
            "labels_known": len(self.labels),
            "open_windows": {
                f"{m}/{v}": s.open.rows for (m, v), s in self._versions.items() if s.open
            },
            "bad_input": dict(self.bad_input),
            "retraining_requests": list(self.retraining_requests[-20:]),
        }

    # -- state -----------------------------------------------------------------------

    def _state_path(self) -> Path:
        return self.folder / "state.json"

    def _load_state(self) -> None:
        saved = _read_json(self._state_path())
        if not saved:
            return
        self._payload_after = saved.get("read_after")
        self._prev_offset = self._payload_after
        self._saved_versions = dict(saved.get("versions", {}))
        self._request_seq = int(saved.get("request_seq", 0))

    def _save_state(self) -> None:
        opened = [s.open_after for s in self._versions.values() if s.open is not None]
        read_after: str | None
        if any(o is None for o in opened):
            read_after = None
        elif opened:
            read_after = min((o for o in opened if o is not None), key=_offset_key)
        else:
            read_after = self._payload_after
        versions = dict(self._saved_versions)
        for (model, version), state in self._versions.items():
            versions[f"{model}/{version}"] = {
                "next_number": state.next_number - (1 if state.open is not None else 0),
                "consecutive": state.consecutive,
                "requested": state.requested,
                "closed_through": state.closed_through,
            }
        _write_json(
            self._state_path(),
            {"read_after": read_after, "versions": versions, "request_seq": self._request_seq},
        )


def read_requests(settings: Settings) -> list[RetrainingRequest]:
    """Every retraining request the sidecar emitted, in order (the retraining job reads them
    after its own checkpoint with :func:`vigie.events.retraining_requests.read_requests`)."""
    return read_all(settings)


def _default_outcome_reader(
    settings: Settings, after: str | None, limit: int, on_skip: OnSkip
) -> Sequence[OutcomeEvent]:
    return read_outcomes(settings, after=after, limit=limit, on_skip=on_skip)


def _evidence(result: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "window_id": result["window_id"],
        "start": result["start"],
        "end": result["end"],
        "rows": result["rows"],
        "share_drifted": result["drift"]["share_drifted"],
        "drifted": [f["name"] for f in result["drift"]["features"] if f["drifted"]],
    }


def _top_features(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every drifted feature of the window, the farthest past its threshold first."""
    drifted = [f for f in result["drift"]["features"] if f["drifted"]]
    # a feature with no value at all in the window has no score: it is the most striking
    drifted.sort(
        key=lambda f: (
            math.inf
            if f["score"] is None or f["threshold"] is None
            else abs(f["score"] - f["threshold"])
        ),
        reverse=True,
    )
    return [{k: f[k] for k in ("name", "stattest", "score", "threshold")} for f in drifted]


def _row_keys(raw: Any, rows: int) -> list[int | None]:
    if isinstance(raw, list) and len(raw) == rows:
        keys: list[int | None] = []
        for value in raw:
            try:
                keys.append(int(value))
            except (TypeError, ValueError):
                keys.append(None)
        return keys
    return [None] * rows


def _offset_key(offset: str) -> tuple[int, ...]:
    """Sortable form of a segment (``000001:000000000123``) or Redis (``1718-0``) offset."""
    return tuple(int(part) for part in offset.replace("-", ":").split(":"))


def _safe_name(text: str) -> bool:
    return bool(text) and all(c.isalnum() or c in "_-." for c in text) and ".." not in text


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _write_json(path: Path, value: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps(value, indent=1, default=_plain), encoding="utf-8")
    os.replace(temporary, path)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _iso(moment: float | None) -> str | None:
    return None if moment is None else datetime.fromtimestamp(moment, UTC).isoformat()


__all__: Sequence[str] = ("Monitor", "read_requests", "BAD_INPUT_KINDS")
