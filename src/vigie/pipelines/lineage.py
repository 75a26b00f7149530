"""Lineage of pipeline runs: what ran, on which inputs, with which code, and what it did."""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from vigie import __version__
from vigie.warehouse.connection import Warehouse


def current_code_version() -> str:
    """The vigie version, plus the git commit when running from a checkout."""
    root = Path(__file__).resolve().parents[3]
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{sha}" if sha else __version__


@dataclass
class TableStats:
    """Counts for one source table in one run. Invariant: in = loaded + quarantined."""

    table: str
    rows_in: int = 0
    rows_loaded: int = 0
    rows_inserted: int = 0
    rows_corrected: int = 0
    rows_quarantined: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    corrections: dict[str, int] = field(default_factory=dict)

    @property
    def balanced(self) -> bool:
        """Whether every row is accounted for."""
        return self.rows_in == self.rows_loaded + self.rows_quarantined


@dataclass
class RunRecord:
    """One pipeline run, as stored in ``pipeline_run`` and reported."""

    run_id: str
    actor: str
    policy_hash: str
    window_from: date | None
    window_to: date | None
    started_at: datetime
    pipeline: str = "flights_batch"
    policy_version: int | None = None
    status: str = "running"
    code_version: str = field(default_factory=current_code_version)
    input_hashes: dict[str, str] = field(default_factory=dict)
    tables: list[TableStats] = field(default_factory=list)
    inserted: dict[str, int] = field(default_factory=dict)
    finished_at: datetime | None = None
    error: str | None = None

    @property
    def duration_s(self) -> float:
        """Seconds from start to finish (or to now)."""
        end = self.finished_at or datetime.now(UTC)
        return (end - self.started_at).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = asdict(self)
        out["duration_s"] = round(self.duration_s, 3)
        parsed: dict[str, Any] = json.loads(json.dumps(out, default=str))
        return parsed


def write_run(warehouse: Warehouse, record: RunRecord) -> None:
    """Insert the run and its per-table counts (inside the caller's transaction)."""
    warehouse.execute(
        "INSERT INTO pipeline_run (run_id, pipeline, status, actor, code_version, window_from, "
        "window_to, input_hashes, policy_hash, started_at, finished_at, duration_s, error) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            record.run_id,
            record.pipeline,
            record.status,
            record.actor,
            record.code_version,
            record.window_from,
            record.window_to,
            json.dumps(record.input_hashes, sort_keys=True),
            record.policy_hash,
            record.started_at,
            record.finished_at,
            record.duration_s,
            record.error,
        ),
    )
    if record.tables:
        rows = pd.DataFrame(
            [
                {
                    "run_id": record.run_id,
                    "table_name": t.table,
                    "rows_in": t.rows_in,
                    "rows_loaded": t.rows_loaded,
                    "rows_inserted": t.rows_inserted,
                    "rows_corrected": t.rows_corrected,
                    "rows_quarantined": t.rows_quarantined,
                }
                for t in record.tables
            ]
        )
        warehouse.insert_new(
            "pipeline_run_table",
            pa.Table.from_pandas(rows, preserve_index=False),
            ["run_id", "table_name"],
        )
