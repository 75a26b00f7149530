"""Pipeline metrics in the Prometheus text format, for a node-exporter textfile collector.

The file ``VIGIE_HOME/metrics/vigie_pipeline.prom`` is replaced atomically after each run;
point node-exporter's ``--collector.textfile.directory`` at that folder. The last success
time survives failed runs (it is carried over from the previous file).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from vigie.pipelines.lineage import RunRecord

FILE_NAME = "vigie_pipeline.prom"
_LAST_SUCCESS = re.compile(r"^vigie_pipeline_last_success_timestamp_seconds\S* (\S+)$", re.M)


def write_metrics(folder: Path, record: RunRecord) -> Path:
    """Write the run's metrics; returns the file written."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / FILE_NAME
    last_success = _previous_success(path)
    if record.status == "success" and record.finished_at is not None:
        last_success = record.finished_at.timestamp()
    lines = [
        "# HELP vigie_pipeline_rows Rows of the last run by source table and outcome.",
        "# TYPE vigie_pipeline_rows gauge",
    ]
    for t in record.tables:
        for outcome, value in (
            ("in", t.rows_in),
            ("loaded", t.rows_loaded),
            ("inserted", t.rows_inserted),
            ("corrected", t.rows_corrected),
            ("quarantined", t.rows_quarantined),
        ):
            lines.append(
                f'vigie_pipeline_rows{{pipeline="{record.pipeline}",table="{t.table}",'
                f'outcome="{outcome}"}} {value}'
            )
    lines += [
        "# HELP vigie_pipeline_duration_seconds Duration of the last run.",
        "# TYPE vigie_pipeline_duration_seconds gauge",
        f'vigie_pipeline_duration_seconds{{pipeline="{record.pipeline}"}} {record.duration_s:.3f}',
        "# HELP vigie_pipeline_last_run_success 1 if the last run succeeded, else 0.",
        "# TYPE vigie_pipeline_last_run_success gauge",
        f'vigie_pipeline_last_run_success{{pipeline="{record.pipeline}"}} '
        f"{int(record.status == 'success')}",
        "# HELP vigie_pipeline_last_success_timestamp_seconds Unix time of the last success.",
        "# TYPE vigie_pipeline_last_success_timestamp_seconds gauge",
        f'vigie_pipeline_last_success_timestamp_seconds{{pipeline="{record.pipeline}"}} '
        f"{last_success:.3f}",
    ]
    tmp = folder / f".{FILE_NAME}.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)
    return path


def _previous_success(path: Path) -> float:
    if not path.exists():
        return 0.0
    match = _LAST_SUCCESS.search(path.read_text())
    return float(match.group(1)) if match else 0.0
