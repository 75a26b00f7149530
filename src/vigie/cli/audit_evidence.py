"""What the compliance audit and the risk register read through the other areas.

Governance sits below the registry, the warehouse, the feature catalogue and the payload
log, so the command reads them here and hands plain facts over
(:class:`vigie.governance.compliance_facts.ServiceFacts`); every fact keeps where it came
from. A store that cannot be read becomes an error in the facts (a named gap in the
report), never a failed command.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from vigie.config import Settings
from vigie.errors import VigieError
from vigie.events.payload_log import read_entries
from vigie.features.catalogue import CATALOGUE, TARGET_SOURCE
from vigie.governance.compliance_facts import (
    FeatureFacts,
    PayloadFacts,
    RunFacts,
    ServiceFacts,
    TableCounts,
    VersionFacts,
)
from vigie.registry import ModelVersion, Registry
from vigie.warehouse.connection import Warehouse, connect, redact
from vigie.warehouse.migrations import current_version

#: Payload entries read per call while walking the whole log.
PAYLOAD_BATCH = 5000

_RUNS_SQL = (
    "SELECT run_id, pipeline, status, actor, code_version, policy_hash, input_hashes, "
    "started_at, finished_at, window_from, window_to, error FROM pipeline_run "
    "ORDER BY started_at, run_id"
)
_COUNTS_SQL = (
    "SELECT run_id, table_name, rows_in, rows_loaded, rows_quarantined, rows_corrected "
    "FROM pipeline_run_table ORDER BY run_id, table_name"
)


def service_facts(settings: Settings) -> ServiceFacts:
    """Read the warehouse's pipeline runs, the registry and the payload log."""
    runs, runs_error = _catch(lambda: warehouse_runs(settings))
    versions, registry_error = _catch(lambda: registry_versions(settings))
    return ServiceFacts(
        runs=tuple(runs or ()),
        runs_error=runs_error,
        versions=tuple(versions or ()),
        registry_error=registry_error,
        payload=payload_facts(settings),
    )


def _catch(read: Any) -> tuple[Any, str | None]:
    try:
        return read(), None
    except VigieError as err:
        return None, str(err)


@contextmanager
def _read_only(settings: Settings) -> Iterator[Warehouse | None]:
    url = settings.resolved_warehouse_url
    if settings.warehouse_url is None and not (settings.home / "warehouse.duckdb").exists():
        yield None  # nothing was ever loaded into this home
        return
    warehouse = connect(url, read_only=url.startswith("duckdb:"))
    try:
        yield warehouse
    finally:
        warehouse.close()


def warehouse_runs(settings: Settings) -> list[RunFacts]:
    """Every pipeline run recorded in the warehouse, oldest first.

    Raises:
        VigieError: WAREHOUSE_UNAVAILABLE when it cannot be read.
    """
    with _read_only(settings) as warehouse:
        if warehouse is None or not current_version(warehouse):
            return []
        rows = warehouse.query(_RUNS_SQL)
        counts: dict[str, list[TableCounts]] = {}
        for run_id, table, rows_in, loaded, quarantined, corrected in warehouse.query(_COUNTS_SQL):
            counts.setdefault(run_id, []).append(
                TableCounts(table, int(rows_in), int(loaded), int(quarantined), int(corrected))
            )
    return [_run(row, counts.get(row[0], [])) for row in rows]


def _run(row: tuple[Any, ...], tables: list[TableCounts]) -> RunFacts:
    run_id, pipeline, status, actor, code, policy, inputs, started, finished = row[:9]
    window_from, window_to, error = row[9:]
    try:
        input_files = len(json.loads(inputs or "{}"))
    except ValueError:
        input_files = 0
    return RunFacts(
        run_id=str(run_id),
        pipeline=str(pipeline),
        status=str(status),
        actor=str(actor),
        code_version=str(code),
        policy_hash=str(policy or ""),
        input_files=input_files,
        started_at=str(started),
        finished_at=str(finished) if finished is not None else None,
        window=f"{window_from or 'start'} to {window_to or 'end'}",
        error=error,
        tables=tuple(tables),
    )


def registry_versions(settings: Settings) -> list[VersionFacts]:
    """Every registered version, its integrity checked, with its input features.

    Raises:
        VigieError: when the registry cannot be listed.
    """
    registry = Registry(settings)
    found = []
    for model in registry.models():
        aliases: dict[str, list[str]] = {}
        for alias, target in registry.aliases(model).items():
            aliases.setdefault(target, []).append(alias)
        for version in registry.versions(model):
            found.append(
                _version(
                    settings, registry, version, tuple(sorted(aliases.get(version.version, [])))
                )
            )
    return found


def _version(
    settings: Settings, registry: Registry, version: ModelVersion, aliases: tuple[str, ...]
) -> VersionFacts:
    integrity: str | None = None
    slices: Any = {}
    try:
        if "metrics.json" in version.files:
            path = registry.open_artifact(version.model, version.version, "metrics.json")
            slices = json.loads(path.read_text(encoding="utf-8")).get("slices") or {}
        else:
            registry.verify(version.model, version.version)
    except (VigieError, OSError, ValueError) as err:
        integrity = str(err)
    snapshot = version.extra.get("snapshot") or {}
    names = [str(n) for n in snapshot.get("features", [])]
    folder = settings.registry_dir / version.model / "versions" / version.version
    return VersionFacts(
        model=version.model,
        version=version.version,
        created_at=version.created_at.isoformat(timespec="seconds"),
        created_by=version.created_by,
        aliases=aliases,
        manifest=_relative(settings, folder / "manifest.json"),
        files={role: digest.sha256 for role, digest in version.files.items()},
        features=tuple(_feature(name) for name in names),
        target_sources=(TARGET_SOURCE,) if names else (),
        metrics=dict(version.metrics),
        slices=slices if isinstance(slices, dict) else {},
        integrity=integrity,
    )


def _feature(name: str) -> FeatureFacts:
    feature = CATALOGUE.get(name)
    if feature is None:
        return FeatureFacts(name, ())
    return FeatureFacts(name, feature.sources, feature.history)


def payload_facts(settings: Settings) -> PayloadFacts:
    """Read the whole payload log: entries, unreadable ones, and drops by writer."""
    where = (
        redact(settings.stream_url)
        if settings.stream_url
        else _relative(settings, settings.payload_dir)
    )
    unreadable: dict[str, str] = {}  # offset -> why (a last bad line is met twice)
    writers: dict[str, list[int]] = {}  # writer -> [lowest seq, highest seq, entries]
    first = last = None
    after, total = None, 0
    try:
        while True:
            batch = read_entries(
                settings,
                after=after,
                limit=PAYLOAD_BATCH,
                on_skip=unreadable.__setitem__,
            )
            if not batch:
                break
            for entry in batch:
                low, high, count = writers.get(entry.writer, [entry.seq, entry.seq, 0])
                writers[entry.writer] = [min(low, entry.seq), max(high, entry.seq), count + 1]
            first = first or batch[0].logged_at
            last, after, total = batch[-1].logged_at, batch[-1].offset, total + len(batch)
    except VigieError as err:
        return PayloadFacts(where, total, tuple(unreadable.items()), error=str(err))
    drops = sum(high - low + 1 - count for low, high, count in writers.values())
    return PayloadFacts(where, total, tuple(unreadable.items()), drops, first, last)


def _relative(settings: Settings, path: Any) -> str:
    try:
        return str(path.resolve().relative_to(settings.home.resolve()))
    except ValueError:
        return str(path)
