"""The raw landing zone: source tables as Parquet, partitioned by month, hashed.

Layout under ``VIGIE_HOME/landing``::

    <table>/year_month=2013-01/part.parquet partitioned tables (flights, weather)
    <table>/all/part.parquet               small tables
    <table>/malformed.parquet              lines that were not CSV rows
    manifest.json                          source hash, and sha256 + rows of every file

A table is extracted again only when its source file changed. Reading verifies every
file against the manifest, so a truncated or edited landing file is refused by name.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from vigie.errors import ErrorCode, VigieError
from vigie.pipelines.expectations import TableExpectation
from vigie.pipelines.sources import file_sha256, read_source
from vigie.pipelines.validate import PARTITION, ROW

#: Arrow strings stay Arrow-backed in pandas (no copy into Python objects).
_ARROW_STRINGS = {
    pa.string(): pd.StringDtype("pyarrow"),
    pa.large_string(): pd.StringDtype("pyarrow"),
}

MANIFEST = "manifest.json"
UNKNOWN_MONTH = "unknown"
#: Hive-style partition folder key (not "month": the tables have a month column).
PARTITION_KEY = "year_month"


@dataclass
class LandedTable:
    """Raw rows of one table for a run, and the hashes of the files they came from."""

    name: str
    frame: pd.DataFrame
    malformed: pd.DataFrame  # columns: line, text
    hashes: dict[str, str]


def load_manifest(landing: Path) -> dict[str, Any]:
    """The landing manifest, or an empty one."""
    path = landing / MANIFEST
    if not path.exists():
        return {"version": 1, "tables": {}}
    try:
        manifest: dict[str, Any] = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise VigieError(
            ErrorCode.SOURCE_CORRUPT,
            f"landing manifest {path} is corrupt: {err}; re-run with --refresh",
            path=str(path),
        ) from err
    return manifest


def _write_manifest(landing: Path, manifest: dict[str, Any]) -> None:
    tmp = landing / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    os.replace(tmp, landing / MANIFEST)


def extract(
    name: str, spec: TableExpectation, source_dir: Path, landing: Path, refresh: bool = False
) -> bool:
    """Land one source table unless its landed copy is current.

    Returns:
        True when the table was (re-)extracted.
    """
    source = source_dir / spec.source
    try:
        manifest = load_manifest(landing)
    except VigieError:
        if not refresh:
            raise
        manifest = {"version": 1, "tables": {}}  # a refresh rebuilds a corrupt manifest
    entry = manifest["tables"].get(name)
    if not refresh and entry and source.is_file() and entry["source_sha256"] == file_sha256(source):
        return False
    raw = read_source(name, source, list(spec.columns))
    folder = landing / name
    files: dict[str, Any] = {}
    for part, rows in _partitions(raw.frame, spec).items():
        files[part] = _write(folder / part / "part.parquet", rows, landing)
    lines = pd.DataFrame(raw.malformed, columns=["line", "text"])
    files["malformed"] = _write(folder / "malformed.parquet", lines, landing)
    manifest["tables"][name] = {
        "source": spec.source,
        "source_sha256": raw.sha256,
        "files": files,
        "extracted_at": datetime.now(UTC).isoformat(),
    }
    _write_manifest(landing, manifest)
    return True


def _partitions(frame: pd.DataFrame, spec: TableExpectation) -> dict[str, pd.DataFrame]:
    if spec.partition != "month":
        return {"all": frame}
    year = pd.to_numeric(frame["year"], errors="coerce")
    month = pd.to_numeric(frame["month"], errors="coerce")
    valid = year.between(1, 9999) & month.between(1, 12)
    label = pd.Series(UNKNOWN_MONTH, index=frame.index, dtype=object)
    label[valid] = (
        year[valid].astype(int).astype(str).str.zfill(4)
        + "-"
        + month[valid].astype(int).astype(str).str.zfill(2)
    )
    return {f"{PARTITION_KEY}={key}": rows for key, rows in frame.groupby(label, sort=True)}


def _write(path: Path, frame: pd.DataFrame, landing: Path) -> dict[str, Any]:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp)
    os.replace(tmp, path)
    return {"path": str(path.relative_to(landing)), "sha256": file_sha256(path), "rows": len(frame)}


def read_landed(name: str, landing: Path, window: tuple[date, date] | None) -> LandedTable:
    """Read one table's landed files (only the months overlapping ``window``), verified.

    Raises:
        VigieError: SOURCE_CORRUPT naming the file when it is missing, altered or unreadable.
    """
    entry = load_manifest(landing)["tables"].get(name)
    if entry is None:
        raise VigieError(ErrorCode.SOURCE_CORRUPT, f"table {name} has not been landed", table=name)
    frames, hashes, malformed = [], {}, pd.DataFrame(columns=["line", "text"])
    for part, info in sorted(entry["files"].items()):
        if not _in_window(part, window):
            continue
        rows = _read_verified(landing / info["path"], info, name)
        hashes[info["path"]] = info["sha256"]
        if part == "malformed":
            malformed = rows
            continue
        rows[PARTITION] = info["path"]
        frames.append(rows)
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return LandedTable(name, frame, malformed, hashes)


def _in_window(part: str, window: tuple[date, date] | None) -> bool:
    if window is None or not part.startswith(f"{PARTITION_KEY}=") or part.endswith(UNKNOWN_MONTH):
        return True
    year, month = (int(x) for x in part.removeprefix(f"{PARTITION_KEY}=").split("-"))
    first = date(year, month, 1)
    start, end = window
    return date(start.year, start.month, 1) <= first <= end


def _read_verified(path: Path, info: dict[str, Any], name: str) -> pd.DataFrame:
    if not path.is_file():
        raise VigieError(
            ErrorCode.SOURCE_CORRUPT,
            f"landing file {path} is missing; re-run with --refresh to land the source again",
            table=name,
        )
    actual = file_sha256(path)
    if actual != info["sha256"]:
        raise VigieError(
            ErrorCode.SOURCE_CORRUPT,
            f"landing file {path} is corrupt: sha256 {actual[:12]}… differs from the "
            f"manifest's {info['sha256'][:12]}…; re-run with --refresh to land it again",
            table=name,
            path=str(path),
        )
    try:
        frame = pq.read_table(path).to_pandas(types_mapper=_ARROW_STRINGS.get)
    except (pa.ArrowException, OSError) as err:
        raise VigieError(
            ErrorCode.SOURCE_CORRUPT, f"landing file {path} is unreadable: {err}", table=name
        ) from err
    if ROW in frame.columns:
        frame[ROW] = frame[ROW].astype("int64")
    return pd.DataFrame(frame)
