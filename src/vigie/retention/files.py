"""Retention and erasure in the files under ``VIGIE_HOME``: the landing zone and the reports.

* Landing zone (:mod:`vigie.pipelines.landing`): a monthly partition (flights, weather)
  goes once its month has outlived the table's retention; the reference tables have no
  event time and stay. The manifest follows, so the pipeline neither misses the files nor
  lands them again (it lands a table again only when its source file changes). It is the
  one store that keeps tail numbers in clear, as the source has them: erasure deletes the
  aircraft's row of ``planes`` and clears the tail number of its flights (and from the
  text of source lines that were not rows), then records the files' new hashes.
* Reports: a pipeline run's quality report goes once the run's start has outlived the
  retention of ``pipeline_reports``. Erasure replaces the subject's values in every text
  report under the reports folder with ``[erased]``.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vigie.config import Settings
from vigie.governance.erasure import ErasureReport, Target, redact_text
from vigie.governance.policy import DataPolicy
from vigie.governance.retention import (
    RetentionReport,
    held_tables,
    month_after,
    parse_instant,
)
from vigie.pipelines.landing import MANIFEST, PARTITION_KEY, load_manifest
from vigie.pipelines.sources import file_sha256

#: Files of the reports folder that erasure reads as text.
TEXT_SUFFIXES = frozenset({".json", ".html", ".md", ".csv", ".txt", ".jsonl"})

#: What an erased value is replaced with in a report.
ERASED = "[erased]"

_TAIL_COLUMN = "tailnum"


def retain_landing(settings: Settings, policy: DataPolicy, report: RetentionReport) -> None:
    """Delete the monthly landing partitions past their table's retention."""
    landing = settings.landing_dir
    manifest = load_manifest(landing)
    changed = False
    for table in held_tables(policy, "landing"):
        entry = manifest["tables"].get(table, {"files": {}})
        months = {
            part.removeprefix(f"{PARTITION_KEY}="): part
            for part in entry["files"]
            if part.startswith(f"{PARTITION_KEY}=")
        }
        sweep = report.start(policy, "landing", "row", table=table, where=f"landing/{table}")
        for month, part in sorted(months.items()):
            end = month_after(month)
            if end is None or end > sweep.cutoff:
                continue
            info = entry["files"][part]
            sweep.count_month(month, int(info.get("rows", 0)))
            if not report.dry_run:
                _remove_file(landing, landing / info["path"])
                del entry["files"][part]
                changed = True
    if changed:
        _write_manifest(landing, manifest)


def _remove_file(landing: Path, path: Path) -> None:
    path.unlink(missing_ok=True)
    folder = path.parent
    if folder != landing and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def _write_manifest(landing: Path, manifest: dict[str, Any]) -> None:
    tmp = landing / f".{MANIFEST}.retention.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    os.replace(tmp, landing / MANIFEST)


def erase_landing(settings: Settings, target: Target, report: ErasureReport) -> None:
    """Take an aircraft's clear tail number out of the landed source files."""
    landing = settings.landing_dir
    manifest = load_manifest(landing) if target.clear is not None else {"tables": {}}
    deleted = redacted = 0
    changed = False
    for table, entry in sorted(manifest["tables"].items()):
        for info in entry["files"].values():
            path = landing / info["path"]
            if target.clear is None or not path.is_file():
                continue
            before = pq.read_table(path)
            after, gone, cleared = _without_tail(before, target.clear, drop=table == "planes")
            deleted, redacted = deleted + gone, redacted + cleared
            if (gone or cleared) and not report.dry_run:
                _rewrite(path, after)
                info.update(sha256=file_sha256(path), rows=after.num_rows)
                changed = True
    if changed:
        _write_manifest(landing, manifest)
    report.add("landing", "deleted", deleted)
    report.add("landing", "redacted", redacted)


def _without_tail(table: pa.Table, tail: str, *, drop: bool) -> tuple[pa.Table, int, int]:
    """The table without the tail number: its rows dropped (``drop``) or its value cleared;
    with how many rows were dropped and cleared."""
    if "text" in table.column_names and _TAIL_COLUMN not in table.column_names:
        texts = table.column("text").to_pylist()
        new = [None if t is None else redact_text(str(t), (tail,))[0] for t in texts]
        cleared = sum(1 for old, text in zip(texts, new, strict=True) if old != text)
        column = pa.array(new, type=table.schema.field("text").type)
        index = table.column_names.index("text")
        return table.set_column(index, "text", column), 0, cleared
    if _TAIL_COLUMN not in table.column_names:
        return table, 0, 0
    column = table.column(_TAIL_COLUMN)
    mask = pc.fill_null(pc.equal(column, pa.scalar(tail, type=column.type)), False)
    found = int(pc.sum(mask).as_py() or 0)
    if not found:
        return table, 0, 0
    if drop:
        return table.filter(pc.invert(mask)), found, 0
    cleared = pc.if_else(mask, pa.scalar(None, type=column.type), column)
    index = table.column_names.index(_TAIL_COLUMN)
    return table.set_column(index, _TAIL_COLUMN, cleared), 0, found


def _rewrite(path: Path, table: pa.Table) -> None:
    tmp = path.with_name(f".{path.name}.erasure.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def pipeline_reports(settings: Settings) -> list[Path]:
    """The folder of every pipeline run's report (``reports/pipeline/<run>``)."""
    folder = settings.reports_dir / "pipeline"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink())


def retain_reports(settings: Settings, policy: DataPolicy, report: RetentionReport) -> None:
    """Delete the pipeline reports of runs that started before the cutoff."""
    sweep = report.start(policy, "pipeline_reports", "report", where="reports/pipeline")
    latest = settings.reports_dir / "pipeline" / "latest"
    for run in pipeline_reports(settings):
        started = _run_start(run)
        if started is None:
            sweep.kept.append({"what": run.name, "why": "no readable quality.json to date it"})
            continue
        if started >= sweep.cutoff:
            continue
        sweep.count(started)
        if report.dry_run:
            continue
        if latest.is_symlink() and os.readlink(latest) == run.name:
            latest.unlink()
        shutil.rmtree(run)


def _run_start(run: Path) -> datetime | None:
    try:
        document = json.loads((run / "quality.json").read_text())
    except (OSError, ValueError):
        return None
    started = document.get("run", {}).get("started_at") if isinstance(document, dict) else None
    return parse_instant(started)


def erase_reports(settings: Settings, target: Target, report: ErasureReport) -> None:
    """Replace the subject's values in every text report with ``[erased]``."""
    values = target.values(raw=True)
    changed = 0
    folder = settings.reports_dir
    for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
        if path.is_symlink() or not path.is_file() or path.suffix not in TEXT_SUFFIXES:
            continue
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
        redacted, found = redact_text(text, values, ERASED)
        if found:
            changed += 1
            if not report.dry_run:
                tmp = path.with_name(f".{path.name}.erasure.tmp")
                tmp.write_text(redacted, encoding="utf-8", errors="surrogateescape")
                os.replace(tmp, path)
    report.add("reports", "redacted", changed)
