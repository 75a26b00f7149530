"""Evidently reports and the Evidently workspace, published per window in the background.

The drift decisions come from the sidecar's own exact statistics (vigie.monitoring.drift);
Evidently remains the engine of the published reports: for every analysed window it runs
a Report (data drift of the features and of the prediction, plus classification or
regression quality once labels have arrived) on the window's rows (a seeded sample of at
most ``VIGIE_MONITOR_REPORT_ROWS``), saves it as HTML and as a JSON snapshot next to the
window's result, and adds the run to an Evidently workspace (one project per model), so
``evidently ui --workspace <home>/monitoring/workspace`` shows every run.

Evidently is imported in the publisher's own thread (its import takes seconds), and a
report that fails is counted and logged; analysis never waits for a report.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from vigie.monitoring.reference import PREDICTION, TARGET, VersionReference
from vigie.training.spec import Task

_log = logging.getLogger(__name__)

#: Share of a window's rows that must be labelled for the report to show quality.
LABELLED_SHARE_FOR_QUALITY = 0.9

#: Fewest labelled rows for quality in a report.
MIN_REPORT_LABELS = 30

#: Reports waiting to be published before new ones replace the oldest of a window.
_QUEUE = 256


@dataclass(frozen=True)
class ReportJob:
    """One report to publish.

    Attributes:
        reference: The version's reference (sample, kinds, task).
        current: The window's rows (features, prediction, label where known).
        folder: Where ``report.html`` and ``snapshot.json`` go.
        name: The run's name in the workspace.
        on_done: Called with True once both files are written, False on failure.
    """

    reference: VersionReference
    current: pd.DataFrame
    folder: Path
    name: str
    on_done: Callable[[bool], None]


class ReportPublisher:
    """Publishes Evidently reports in a background thread.

    Args:
        workspace: The Evidently workspace folder.
        on_outcome: Called with ``success`` or ``failure`` after each report.
    """

    def __init__(self, workspace: Path, on_outcome: Callable[[str], None]) -> None:
        self._workspace_path = workspace
        self._on_outcome = on_outcome
        self._jobs: queue.Queue[ReportJob | None] = queue.Queue(maxsize=_QUEUE)
        self._thread: threading.Thread | None = None
        self._projects: dict[str, Any] = {}
        self.pending_dropped = 0

    def start(self) -> None:
        """Start the publishing thread."""
        self._thread = threading.Thread(target=self._run, name="evidently-reports", daemon=True)
        self._thread.start()

    def submit(self, job: ReportJob) -> None:
        """Queue a report; when the queue is full the job is dropped and counted."""
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            self.pending_dropped += 1
            self._on_outcome("dropped")
            job.on_done(False)

    def idle(self) -> bool:
        """Whether no report is waiting."""
        return self._jobs.unfinished_tasks == 0

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the queued reports (within ``timeout``) and stop."""
        if self._thread is None:
            return
        self._jobs.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                if job is None:
                    return
                ok = self._publish(job)
                self._on_outcome("success" if ok else "failure")
                job.on_done(ok)
            finally:
                self._jobs.task_done()

    def _publish(self, job: ReportJob) -> bool:
        try:
            snapshot = build_report(job.reference, job.current, job.name)
            job.folder.mkdir(parents=True, exist_ok=True)
            snapshot.save_html(str(job.folder / "report.html"))
            snapshot.save_json(str(job.folder / "snapshot.json"))
            self._add_run(job.reference.model, snapshot, job.name)
        except Exception as err:  # a report must never stop the sidecar
            _log.warning("Evidently report %s failed: %s", job.name, err)
            return False
        return True

    def _add_run(self, model: str, snapshot: Any, name: str) -> None:
        from evidently.ui.workspace import Workspace  # noqa: PLC0415 (slow import, own thread)

        workspace = Workspace.create(str(self._workspace_path))
        project = self._projects.get(model)
        if project is None:
            found = [p for p in workspace.list_projects() if p.name == model]
            project = (
                found[0]
                if found
                else workspace.create_project(
                    model, description=f"vigie drift and quality windows of {model}"
                )
            )
            self._projects[model] = project
        workspace.add_run(project.id, snapshot, name=name)


def _enough_labels(labelled: int, rows: int) -> bool:
    """Quality goes into the report once nearly every row has its label (the report then
    runs on the labelled rows only, which are nearly all of them)."""
    return labelled >= MIN_REPORT_LABELS and labelled >= LABELLED_SHARE_FOR_QUALITY * rows


def build_report(reference: VersionReference, current: pd.DataFrame, name: str) -> Any:
    """Run Evidently on one window: drift of the features and of the prediction, and
    classification or regression quality once nearly every row is labelled."""
    from evidently import (  # noqa: PLC0415 (slow import, only where reports are made)
        BinaryClassification,
        DataDefinition,
        Dataset,
        Regression,
        Report,
    )
    from evidently.presets import (  # noqa: PLC0415
        ClassificationPreset,
        DataDriftPreset,
        RegressionPreset,
    )

    kinds = reference.kinds
    numeric = [c for c, k in kinds.items() if k == "numeric"] + [PREDICTION]
    categorical = [c for c, k in kinds.items() if k == "categorical"]
    columns = [*kinds, PREDICTION]
    labelled = current[current[TARGET].notna()] if TARGET in current else current.iloc[:0]
    metrics: list[Any] = [DataDriftPreset(columns=columns)]
    task: dict[str, Any] = {}
    if _enough_labels(len(labelled), len(current)) and TARGET in reference.sample:
        if reference.task is Task.CLASSIFICATION:
            task["classification"] = [
                BinaryClassification(target=TARGET, prediction_probas=PREDICTION, pos_label=1)
            ]
            metrics.append(ClassificationPreset())
        else:
            task["regression"] = [Regression(target=TARGET, prediction=PREDICTION)]
            metrics.append(RegressionPreset())
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical, **task)
    ref = reference.sample
    if task:
        ref = ref[ref[TARGET].notna()]
        current = labelled
        if reference.task is Task.CLASSIFICATION:
            ref = ref.assign(**{TARGET: ref[TARGET].astype(int)})
            current = current.assign(**{TARGET: current[TARGET].astype(int)})
    keep = [*columns, TARGET] if task else columns
    report = Report(metrics)
    return report.run(
        Dataset.from_pandas(current[keep].reset_index(drop=True), data_definition=definition),
        Dataset.from_pandas(ref[keep].reset_index(drop=True), data_definition=definition),
        name=name,
    )
