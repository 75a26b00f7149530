"""The evidence a compliance audit reads: what the system itself recorded, and nothing else.

Two kinds of evidence meet here. What lives as files under ``VIGIE_HOME`` is read by
:mod:`vigie.governance.compliance_home`: the audit log, the API key file, the local
secrets, the pipelines' quality reports, the drift sidecar's window results, closed-loop
results and which copies of the data exist (landing zone, snapshots, candidates, reports).
What lives behind another area's interface (the registry's versions, the warehouse's
pipeline runs, the payload log) is read by the command that builds the report, which hands
it over as :class:`ServiceFacts`: governance sits below those areas and does not import
them.

Every fact keeps where it came from (a path relative to home, an id, an audit ``seq``) so
that each item of the report can name its evidence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from vigie.governance.audit import AuditEntry, AuditVerification
from vigie.governance.compliance_secrets import KeyFileFacts, SecretFacts
from vigie.governance.policy import DataPolicy

#: The registry alias of the version in service.
PRODUCTION = "production"


@dataclass(frozen=True)
class Period:
    """The period of the time-based items: from ``since`` (inclusive, UTC) to now."""

    since: date | None = None

    def includes(self, moment: str | datetime | None) -> bool:
        """Whether a timestamp falls in the period (an unknown time counts as outside)."""
        if self.since is None:
            return True
        when = parse_time(moment)
        return when is not None and when.date() >= self.since

    @property
    def label(self) -> str:
        """The period in words."""
        return f"since {self.since.isoformat()}" if self.since else "whole history"


def parse_time(moment: str | datetime | None) -> datetime | None:
    """A timestamp as an aware datetime (naive ones are UTC); None when unreadable."""
    if moment is None:
        return None
    try:
        when = moment if isinstance(moment, datetime) else datetime.fromisoformat(str(moment))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@dataclass(frozen=True)
class FeatureFacts:
    """One input feature of a model version and the policy columns it derives from.

    Attributes:
        name: The feature name.
        sources: ``table.column`` of the data policy; empty when the feature is unknown.
        history: Computed from other records' values (the policy must allow them as history).
    """

    name: str
    sources: tuple[str, ...]
    history: bool = False


@dataclass(frozen=True)
class VersionFacts:
    """One registered model version, as its manifest and files describe it.

    Attributes:
        model: The model's name.
        version: The version id.
        created_at: When it was registered.
        created_by: Who registered it.
        aliases: The aliases pointing at it now.
        manifest: Where its manifest is (relative to home).
        files: Each file's role and sha256.
        features: Its input features (from the manifest's snapshot lineage).
        target_sources: The policy columns its label comes from.
        metrics: Its headline evaluation metrics.
        slices: Metrics per slice from its ``metrics.json`` (column to rows).
        integrity: None when every file matches its manifest; else the problem.
    """

    model: str
    version: str
    created_at: str
    created_by: str
    aliases: tuple[str, ...]
    manifest: str
    files: Mapping[str, str]
    features: tuple[FeatureFacts, ...]
    target_sources: tuple[str, ...] = ()
    metrics: Mapping[str, float] = field(default_factory=dict)
    slices: Mapping[str, list[dict[str, Any]]] = field(default_factory=dict)
    integrity: str | None = None

    @property
    def ref(self) -> str:
        """``model/version``."""
        return f"{self.model}/{self.version}"


@dataclass(frozen=True)
class TableCounts:
    """Rows of one source table in one pipeline run."""

    table: str
    rows_in: int
    rows_loaded: int
    rows_quarantined: int
    rows_corrected: int = 0


@dataclass(frozen=True)
class RunFacts:
    """One pipeline run, as the warehouse's ``pipeline_run`` tables record it."""

    run_id: str
    pipeline: str
    status: str
    actor: str
    code_version: str
    policy_hash: str
    input_files: int
    started_at: str
    finished_at: str | None
    window: str
    error: str | None
    tables: tuple[TableCounts, ...] = ()


@dataclass(frozen=True)
class PayloadFacts:
    """What reading the whole payload log found.

    Attributes:
        where: The log (a folder relative to home, or a redacted stream URL).
        entries: Entries read.
        unreadable: Offsets and reasons of the lines or stream entries that did not decode.
        drops: Entries missing from a writer's numbering (dropped when its buffer was full).
        first_logged: ``logged_at`` of the first entry; None when empty.
        last_logged: ``logged_at`` of the last entry; None when empty.
        error: Why it could not be read at all; None when it was.
    """

    where: str
    entries: int
    unreadable: tuple[tuple[str, str], ...] = ()
    drops: int = 0
    first_logged: str | None = None
    last_logged: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class ServiceFacts:
    """The evidence read through other areas' interfaces by the command.

    Attributes:
        runs: Pipeline runs from the warehouse, oldest first.
        runs_error: Why the warehouse could not be read; None when it was.
        versions: Every registered model version.
        registry_error: Why the registry could not be read; None when it was.
        payload: The payload log's reading.
    """

    runs: tuple[RunFacts, ...] = ()
    runs_error: str | None = None
    versions: tuple[VersionFacts, ...] = ()
    registry_error: str | None = None
    payload: PayloadFacts | None = None


@dataclass(frozen=True)
class QualityFacts:
    """The quality report of one pipeline run (``reports/pipeline/<run_id>/quality.json``).

    Attributes:
        run_id: The run.
        path: The report, relative to home.
        started_at: When the run started.
        balanced: Whether every row was loaded or quarantined.
        failures: Rows failing each check, by table.
        counts: Rows in and quarantined, by table.
    """

    run_id: str
    path: str
    started_at: str
    balanced: bool
    failures: Mapping[str, Mapping[str, int]]
    counts: Mapping[str, TableCounts]


@dataclass(frozen=True)
class WindowFacts:
    """The drift sidecar's results for one model version (``monitoring/results``)."""

    model: str
    version: str
    path: str
    windows: int
    drifted: int
    latest_window: str
    latest_end: str | None
    latest_drift: bool
    latest_quality_passed: bool | None
    retraining_requested: int


@dataclass(frozen=True)
class ClosedLoopFacts:
    """A closed-loop simulation's results (``closed-loop*.json``)."""

    path: str
    model: str
    months: int
    static_auc: float | None
    loop_auc: float | None


@dataclass(frozen=True)
class AuditFacts:
    """The audit log: its verification and every entry that parsed.

    Attributes:
        path: The log, relative to home.
        present: Whether the file exists.
        verification: The chain check (against the anchor, when one was found).
        entries: Every entry read, in file order (untrusted after a failed check).
        anchor: ``(seq, hash, report path)`` of the head recorded by the latest earlier
            audit report; None when there is none.
    """

    path: str
    present: bool
    verification: AuditVerification | None
    entries: tuple[AuditEntry, ...]
    anchor: tuple[int, str, str] | None = None

    def actions(self, prefix: str) -> list[AuditEntry]:
        """The entries whose action is ``prefix`` or starts with ``prefix.``."""
        return [e for e in self.entries if e.action == prefix or e.action.startswith(prefix)]


@dataclass(frozen=True)
class Copies:
    """Where copies of the data exist under home, beside the warehouse."""

    landing_tables: frozenset[str]
    snapshots: int
    candidates: int
    registry_versions: int
    quality_reports: int
    monitoring_reports: int
    payload_entries: int


@dataclass(frozen=True)
class Evidence:
    """Everything a compliance audit or a risk assessment judges."""

    home: Path
    generated_at: datetime
    period: Period
    policy: DataPolicy
    policy_path: str
    mode: str
    audit: AuditFacts
    keys: KeyFileFacts
    secrets: SecretFacts
    services: ServiceFacts
    quality: tuple[QualityFacts, ...]
    monitoring: tuple[WindowFacts, ...]
    closed_loop: tuple[ClosedLoopFacts, ...]
    copies: Copies

    def production_versions(self) -> list[VersionFacts]:
        """The versions the ``production`` alias points at now."""
        return [v for v in self.services.versions if PRODUCTION in v.aliases]

    def relative(self, path: Path) -> str:
        """``path`` relative to home when inside it, else as given."""
        try:
            return str(path.resolve().relative_to(self.home.resolve()))
        except ValueError:
            return str(path)
