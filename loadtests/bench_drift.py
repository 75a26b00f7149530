"""Benchmark: the drift engine against Evidently's full computation, side by side.

Data: real 2013 flights (the full-year pipeline into a temporary home, then the model
features of every arrived flight). The reference is 50,000 rows resampled from
January-February; windows are resampled from March-December; seeds are fixed. In one
process it times:

* ``evidently``: :func:`vigie.monitoring.drift.evidently_drift` (``Report`` +
  ``DataDriftPreset``) on a 100,000-row window; the import of Evidently on its own line;
* ``engine``: :func:`vigie.monitoring.drift.detect_drift` on the same window, the
  reference counted once beforehand (its time on its own line, as the sidecar counts it
  once per model version), the window added as one batch of arrays, as one batch of
  lists, and as payload entries (lists of 64 rows, None for missing values);
* the engine on a 1,000,000-row window, the same three ways, and Evidently once on it to
  check the decisions (``--skip-million-evidently`` leaves that out).

Each timing is the median of ``--repeat`` runs (Evidently on the million rows: one run).
Every engine decision (stattest and drift of each column, dataset drift) must be
Evidently's on the same window: otherwise the script exits with status 1. Results are
printed and written to ``VIGIE_HOME/bench/drift.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from vigie.config import load_settings
from vigie.governance.policy import load_policy
from vigie.monitoring.drift import (
    DriftResult,
    ReferenceProfile,
    WindowStats,
    detect_drift,
    evidently_drift,
    kinds_for,
)
from vigie.pipelines.run import run_pipeline
from vigie.training.snapshot import build_snapshot
from vigie.training.spec import load_spec

T = TypeVar("T")
SEED = 2013
REFERENCE_ROWS = 50_000
ENTRY_ROWS = 64
#: Relative tolerance on scores when comparing with Evidently (see the comparison test).
SCORE_REL = 1e-9


def real_flights(home: Path) -> pd.DataFrame:
    """Model features of every arrived flight of 2013, through the real pipeline."""
    settings = load_settings(home=home, log_format="json")
    run_pipeline(settings, date(2013, 1, 1), date(2013, 12, 31))
    spec = load_spec(settings.models_dir, "flight_delay", policy=load_policy(None))
    snapshot = build_snapshot(settings, spec, date(2013, 1, 1), date(2013, 12, 31))
    return snapshot.read()


def timed(repeat: int, run: Callable[[], T]) -> tuple[float, list[float], T]:
    """Median seconds, every sample, and the last result of ``repeat`` runs."""
    samples: list[float] = []
    result: T | None = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        samples.append(time.perf_counter() - start)
    assert result is not None
    return statistics.median(samples), samples, result


def as_lists(frame: pd.DataFrame) -> dict[str, list[Any]]:
    """Columns as payload entries carry them: lists, None for a missing value."""
    lists: dict[str, list[Any]] = {}
    for column in frame.columns:
        values = frame[column].to_numpy(dtype=object)
        values[pd.isna(values)] = None
        lists[str(column)] = values.tolist()
    return lists


def as_entries(lists: Mapping[str, list[Any]], rows: int) -> list[dict[str, list[Any]]]:
    """The rows cut into payload entries of ENTRY_ROWS rows."""
    return [
        {c: values[start : start + ENTRY_ROWS] for c, values in lists.items()}
        for start in range(0, rows, ENTRY_ROWS)
    ]


def engine(profile: ReferenceProfile, batches: Sequence[Mapping[str, Any]]) -> DriftResult:
    """Count the window batch by batch, then decide."""
    window = WindowStats(profile.kinds)
    for batch in batches:
        window.add(batch)
    return detect_drift(profile, window)


def same_decisions(ours: DriftResult, theirs: DriftResult) -> bool:
    """Whether every stattest and decision is Evidently's, and every score close to it."""
    if ours.dataset_drift != theirs.dataset_drift or ours.drifted_count != theirs.drifted_count:
        return False
    return all(
        (a.name, a.stattest, a.drifted) == (b.name, b.stattest, b.drifted)
        and abs(a.score - b.score) <= SCORE_REL * max(abs(b.score), 1e-300)
        for a, b in zip(ours.features, theirs.features, strict=True)
    )


def bench_window(
    label: str,
    profile: ReferenceProfile,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    repeat: int,
    evidently_repeat: int,
) -> list[dict[str, Any]]:
    """Rows of the table for one window: Evidently (if asked), then the engine three ways."""
    kinds = profile.kinds
    arrays = {c: current[c].to_numpy() for c in kinds}
    lists = as_lists(current[list(kinds)])
    entries = as_entries(lists, len(current))
    rows: list[dict[str, Any]] = []
    truth: DriftResult | None = None
    evidently_s: float | None = None
    if evidently_repeat:
        evidently_s, samples, truth = timed(
            evidently_repeat, lambda: evidently_drift(reference, current, kinds)
        )
        rows.append(_row(label, len(current), "evidently (Report + DataDriftPreset)", samples))
    for path, batches in (
        ("engine, one batch of arrays", [arrays]),
        ("engine, one batch of lists", [lists]),
        (f"engine, {len(entries):,} entries of {ENTRY_ROWS} rows", entries),
    ):
        seconds, samples, result = timed(repeat, partial(engine, profile, batches))
        row = _row(label, len(current), path, samples)
        row["dataset_drift"] = result.dataset_drift
        row["drifted"] = [f.name for f in result.features if f.drifted]
        if truth is not None and evidently_s is not None:
            row["speedup"] = round(evidently_s / seconds, 1)
            row["same_decisions"] = same_decisions(result, truth)
        rows.append(row)
    return rows


def main() -> None:
    """Run the benchmark, print the side-by-side table, exit 1 if decisions differ."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-million-evidently", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vigie-bench-drift-") as tmp:
        start = time.perf_counter()
        flights = real_flights(Path(tmp))
        data_s = time.perf_counter() - start
    features = [c for c in flights.columns if c not in {"flight_key", "sched_dep_utc", "arr_delay"}]
    kinds = kinds_for(features)
    rng = np.random.default_rng(SEED)
    early, later = flights[flights["month"] <= 2], flights[flights["month"] > 2]
    reference = early.iloc[rng.integers(0, len(early), REFERENCE_ROWS)][features]
    reference = reference.reset_index(drop=True)

    start = time.perf_counter()
    _import_evidently()
    import_s = time.perf_counter() - start
    profile_s, _, profile = timed(
        args.repeat, lambda: ReferenceProfile.from_frame(reference, kinds)
    )

    results: list[dict[str, Any]] = []
    for label, rows, evidently_repeat in (
        ("100k", 100_000, args.repeat),
        ("1M", 1_000_000, 0 if args.skip_million_evidently else 1),
    ):
        current = later.iloc[rng.integers(0, len(later), rows)][features].reset_index(drop=True)
        results += bench_window(
            label,
            profile,
            reference,
            current,
            repeat=args.repeat,
            evidently_repeat=evidently_repeat,
        )

    summary = {
        "flights": len(flights),
        "data_s": round(data_s, 1),
        "evidently_import_s": round(import_s, 3),
        "reference_rows": REFERENCE_ROWS,
        "reference_counts_s": round(profile_s, 3),
        "rows": results,
    }
    _print(summary)
    out = load_settings().home / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "drift.json").write_text(json.dumps(summary, indent=2))
    if any(row.get("same_decisions") is False for row in results):
        print("FAIL: the engine's decisions differ from Evidently's", file=sys.stderr)
        sys.exit(1)


def _import_evidently() -> None:
    from evidently import Report  # noqa: F401, PLC0415 (timed on its own)
    from evidently.presets import DataDriftPreset  # noqa: F401, PLC0415


def _row(label: str, rows: int, path: str, samples: list[float]) -> dict[str, Any]:
    return {
        "window": label,
        "rows": rows,
        "path": path,
        "seconds": round(statistics.median(samples), 3),
        "samples": [round(s, 3) for s in samples],
    }


def _print(summary: dict[str, Any]) -> None:
    print(f"real 2013 flights: {summary['flights']:,} (pipeline + snapshot {summary['data_s']} s)")
    print(f"evidently import: {summary['evidently_import_s']} s (not in the times below)")
    print(
        f"reference counts, once per version: {summary['reference_counts_s']} s "
        f"({summary['reference_rows']:,} rows; not in the engine times below)"
    )
    print(f"{'window':<7} {'path':<42} {'seconds':>8} {'speedup':>8}  decisions")
    for row in summary["rows"]:
        speedup = f"{row['speedup']}x" if "speedup" in row else ""
        same = {True: "same as Evidently", False: "DIFFERENT"}.get(row.get("same_decisions"), "")
        print(f"{row['window']:<7} {row['path']:<42} {row['seconds']:>8} {speedup:>8}  {same}")


if __name__ == "__main__":
    main()
