"""Retention and erasure of training snapshots (``VIGIE_HOME/snapshots/<hash>.parquet``).

Retention deletes a snapshot once its newest scheduled departure has outlived the
retention of ``snapshots``, unless a model version in production or staging was trained
on it: that one is kept, and reported.

Erasure of an aircraft rewrites every snapshot holding its flights with the aircraft's
attributes (the features drawn from ``planes``) cleared on them: exactly what the erased
warehouse now gives, so the snapshot built again is the same. The content changes, so the
snapshot takes its new content hash as its name and the old file goes. Lineage is not
changed silently: the old name gets a marker, ``<old hash>.rewritten.json``, naming the
snapshot that replaced it (which is how this module, and a person, get from a version's
``snapshot_hash`` to the file), and the erasure record lists every registered version
trained on it.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vigie.config import Settings
from vigie.features.catalogue import CATALOGUE
from vigie.governance.erasure import ErasureReport
from vigie.governance.policy import DataPolicy
from vigie.governance.retention import RetentionReport, as_utc
from vigie.registry import Alias, LocalStore
from vigie.registry.reader import Reader
from vigie.training.snapshot import canonical_hash

#: The aliases whose versions keep their training snapshot past its retention.
LIVE_ALIASES = (Alias.PRODUCTION, Alias.STAGING)

#: Snapshot columns drawn from the aircraft (the catalogue's features with a planes source).
AIRCRAFT_COLUMNS = tuple(
    name
    for name, feature in CATALOGUE.items()
    if any(source.startswith("planes.") for source in feature.sources)
)

#: Suffix of the marker left under a rewritten snapshot's old name.
REWRITTEN = ".rewritten.json"


def snapshot_files(settings: Settings) -> list[Path]:
    """Every snapshot file, by name."""
    folder = settings.snapshots_dir
    return sorted(folder.glob("*.parquet")) if folder.is_dir() else []


def current_hash(settings: Settings, digest: str) -> str:
    """The snapshot that ``digest`` now is: itself, or what erasure rewrote it as."""
    seen = {digest}
    while (marker := settings.snapshots_dir / f"{digest}{REWRITTEN}").is_file():
        digest = str(json.loads(marker.read_text())["rewritten_as"])
        if digest in seen:  # a rewrite back to an earlier content
            break
        seen.add(digest)
    return digest


def trained_on(settings: Settings) -> dict[str, list[dict[str, Any]]]:
    """Current snapshot hash to the registered versions trained on it: model, version,
    aliases and the ``snapshot_hash`` its lineage names."""
    reader = Reader(LocalStore(settings.registry_dir))
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for model in reader.models():
        aliases: dict[str, list[str]] = defaultdict(list)
        for alias, number in reader.aliases(model).items():
            aliases[number].append(alias)
        for version in reader.versions(model):
            found[current_hash(settings, version.snapshot_hash)].append(
                {
                    "model": model,
                    "version": version.version,
                    "aliases": aliases[version.version],
                    "snapshot_hash": version.snapshot_hash,
                }
            )
    return dict(found)


def retain_snapshots(settings: Settings, policy: DataPolicy, report: RetentionReport) -> None:
    """Delete the snapshots past their retention that no live version was trained on."""
    sweep = report.start(policy, "snapshots", "snapshot", where="snapshots")
    live = {
        digest: [
            f"{v['model']}/{v['version']} ({', '.join(v['aliases'])})"
            for v in versions
            if any(alias in LIVE_ALIASES for alias in v["aliases"])
        ]
        for digest, versions in trained_on(settings).items()
    }
    for path in snapshot_files(settings):
        newest = _newest_departure(path)
        if newest is None or newest >= sweep.cutoff:
            continue
        if live.get(path.stem):
            sweep.kept.append(
                {"what": path.name, "why": f"training snapshot of {', '.join(live[path.stem])}"}
            )
            continue
        sweep.count(newest)
        if not report.dry_run:
            path.unlink()
    if not report.dry_run:
        _drop_dangling_markers(settings)


def _newest_departure(path: Path) -> datetime | None:
    column = pq.read_table(path, columns=["sched_dep_utc"]).column("sched_dep_utc")
    newest = pc.max(column).as_py()
    return as_utc(newest) if isinstance(newest, datetime) else None


def _drop_dangling_markers(settings: Settings) -> None:
    """Markers whose snapshot is gone lead nowhere: lineage ends there, as for any
    snapshot retention deleted."""
    folder = settings.snapshots_dir
    for marker in sorted(folder.glob(f"*{REWRITTEN}")) if folder.is_dir() else []:
        digest = current_hash(settings, marker.name.removesuffix(REWRITTEN))
        if not (folder / f"{digest}.parquet").is_file():
            marker.unlink()


def erase_snapshots(settings: Settings, flights: list[int], report: ErasureReport) -> None:
    """Clear an aircraft's attributes on its ``flights`` in every snapshot holding them."""
    rewritten = 0
    registered = trained_on(settings) if flights else {}
    keys = pa.array(flights, type=pa.int64())
    for path in snapshot_files(settings) if flights else []:
        cleared, rows = _without_aircraft(pq.read_table(path), keys)
        if not rows:
            continue
        rewritten += 1
        digest = canonical_hash(cleared)
        report.versions.extend(
            version | {"rewritten": path.stem, "rewritten_as": digest, "rows": rows}
            for version in registered.get(path.stem, [])
        )
        if not report.dry_run:
            _replace(path, cleared, digest, rows)
    report.add("snapshots", "rewritten", rewritten)


def _replace(path: Path, table: pa.Table, digest: str, rows: int) -> None:
    """Write the snapshot under its new name, leave the marker, then remove the old file."""
    target = path.with_name(f"{digest}.parquet")
    partial = path.with_name(f".{digest}.erasure.tmp")
    pq.write_table(table, partial)
    os.replace(partial, target)
    marker = {
        "rewritten_as": digest,
        "why": "erasure of a data subject (the audit log's governance.erase entry)",
        "rows_cleared": rows,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    tmp = path.with_name(f".{path.stem}{REWRITTEN}.tmp")
    tmp.write_text(json.dumps(marker, indent=2))
    os.replace(tmp, path.with_name(f"{path.stem}{REWRITTEN}"))
    path.unlink()


def _without_aircraft(table: pa.Table, flights: pa.Array) -> tuple[pa.Table, int]:
    """The snapshot with the aircraft columns cleared on ``flights``; how many rows changed."""
    columns = [name for name in AIRCRAFT_COLUMNS if name in table.column_names]
    if not columns or "flight_key" not in table.column_names:
        return table, 0
    held = pc.is_valid(table.column(columns[0]))
    for name in columns[1:]:
        held = pc.or_(held, pc.is_valid(table.column(name)))
    mask = pc.and_(pc.is_in(table.column("flight_key"), value_set=flights), held)
    rows = int(pc.sum(mask).as_py() or 0)
    if not rows:
        return table, 0
    for name in columns:
        column = table.column(name)
        empty = pa.scalar(None, type=column.type)
        table = table.set_column(
            table.column_names.index(name), name, pc.if_else(mask, empty, column)
        )
    return table, rows
