"""The items of a compliance audit: a status, the evidence behind it, and a remedy per gap."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence

from pydantic import BaseModel, ConfigDict, Field

from vigie.governance.audit import AuditEntry
from vigie.governance.compliance_facts import Evidence


class Status(enum.StrEnum):
    """Where an item stands."""

    CONFORMS = "conforms"
    GAP = "gap"
    NOT_APPLICABLE = "not_applicable"


class Ref(BaseModel):
    """One piece of evidence: what kind it is, and where to find it.

    Attributes:
        kind: ``policy``, ``audit_entry``, ``audit_log``, ``pipeline_run``,
            ``quality_report``, ``registry_version``, ``model_card``, ``key_file``,
            ``monitoring``, ``payload_log``, ``risk_register``, ``closed_loop``, ``setting``.
        ref: Where: a path relative to ``VIGIE_HOME``, a run id, ``model/version``,
            ``seq N`` of the audit log.
        detail: What it shows.
    """

    model_config = ConfigDict(frozen=True)

    kind: str
    ref: str
    detail: str = ""


class Gap(BaseModel):
    """One shortfall and how to remedy it."""

    model_config = ConfigDict(frozen=True)

    problem: str
    remedy: str


class Table(BaseModel):
    """Rows of facts shown with an item (the first column heads each row)."""

    model_config = ConfigDict(frozen=True)

    caption: str
    columns: tuple[str, ...]
    rows: list[tuple[str, ...]] = Field(default_factory=list)


class Item(BaseModel):
    """One audited requirement.

    Attributes:
        id: Stable identifier, e.g. ``gdpr.art32.security``.
        framework: ``GDPR`` or ``EU AI Act``.
        article: The article, e.g. ``Art. 32``.
        title: The requirement in a few words.
        requirement: What the article asks, in one sentence.
        status: :class:`Status`.
        summary: What was found, in one sentence.
        time_based: Whether ``--since`` limits the evidence looked at.
        evidence: Where the finding comes from.
        gaps: Each shortfall with its remedy (empty unless the status is ``gap``).
        tables: Facts shown with the item.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    framework: str
    article: str
    title: str
    requirement: str
    status: Status
    summary: str
    time_based: bool = False
    evidence: list[Ref] = Field(default_factory=list)
    gaps: list[Gap] = Field(default_factory=list)
    tables: list[Table] = Field(default_factory=list)


#: Every item: framework, article, title, what the article asks, whether ``--since`` limits it.
CATALOGUE: dict[str, tuple[str, str, str, str, bool]] = {
    "gdpr.art30.records": (
        "GDPR", "Art. 30", "Records of processing activities",
        "Keep a record of each processing: purposes, categories of data and recipients, "
        "time limits for erasure.", False,
    ),
    "gdpr.art5.minimisation": (
        "GDPR", "Art. 5(1)(c), 25", "Data minimisation",
        "Process only the data adequate, relevant and limited to the purpose.", False,
    ),
    "gdpr.art5.storage": (
        "GDPR", "Art. 5(1)(e)", "Storage limitation",
        "Keep data no longer than necessary: the retention periods are applied.", True,
    ),
    "gdpr.art32.security": (
        "GDPR", "Art. 32", "Security of processing",
        "Appropriate technical measures: access control, integrity of records, protection "
        "of secrets.", False,
    ),
    "gdpr.art17.erasure": (
        "GDPR", "Art. 17", "Right to erasure",
        "Erase a data subject's data without undue delay when asked.", True,
    ),
    "gdpr.art35.dpia": (
        "GDPR", "Art. 35", "Data protection impact assessment inputs",
        "Describe the processing, its purposes, the data subjects and the risks.", False,
    ),
    "aiact.art9.risk": (
        "EU AI Act", "Art. 9", "Risk management system",
        "Identify, estimate and treat the risks, kept up to date over the lifecycle.", False,
    ),
    "aiact.art10.data": (
        "EU AI Act", "Art. 10", "Data and data governance",
        "Training data under governance: origin, preparation, quality checks, examination "
        "for possible biases.", True,
    ),
    "aiact.art12.records": (
        "EU AI Act", "Art. 12", "Record-keeping",
        "Automatic logging of events over the system's lifetime, for traceability.", True,
    ),
    "aiact.art13.transparency": (
        "EU AI Act", "Art. 13", "Transparency",
        "Instructions for use: intended purpose, performance, limits, input data.", False,
    ),
    "aiact.art14.oversight": (
        "EU AI Act", "Art. 14", "Human oversight",
        "Natural persons oversee the system and decide on its use.", True,
    ),
    "aiact.art15.accuracy": (
        "EU AI Act", "Art. 15", "Accuracy, robustness",
        "Declared accuracy, kept over the lifecycle; resilience to errors and drift.", False,
    ),
}  # fmt: skip


def make_item(
    item_id: str,
    *,
    summary: str,
    evidence: Iterable[Ref],
    gaps: Sequence[Gap] = (),
    tables: Iterable[Table] = (),
    applicable: bool = True,
) -> Item:
    """The item ``item_id`` of :data:`CATALOGUE`; any gap makes its status ``gap``.

    Args:
        item_id: Its id in :data:`CATALOGUE`.
        summary: What was found.
        evidence: Where it comes from.
        gaps: Shortfalls with their remedies.
        tables: Facts shown with the item.
        applicable: False when there is nothing to assess (and no gap).
    """
    status = Status.GAP if gaps else (Status.CONFORMS if applicable else Status.NOT_APPLICABLE)
    framework, article, title, requirement, time_based = CATALOGUE[item_id]
    return Item(
        id=item_id,
        framework=framework,
        article=article,
        title=title,
        requirement=requirement,
        status=status,
        summary=summary,
        time_based=time_based,
        evidence=list(evidence),
        gaps=list(gaps),
        tables=list(tables),
    )


def gap(problem: str, remedy: str) -> Gap:
    """A shortfall and its remedy."""
    return Gap(problem=problem, remedy=remedy)


def table(caption: str, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> Table:
    """Facts shown with an item (the first column heads each row)."""
    return Table(caption=caption, columns=tuple(columns), rows=[tuple(r) for r in rows])


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``1 run``, ``2 runs``."""
    return f"{count} {noun if count == 1 else (many or noun + 's')}"


def policy_ref(evidence: Evidence) -> Ref:
    """The data policy as evidence: its file, version and content hash."""
    policy = evidence.policy
    return Ref(
        kind="policy",
        ref=evidence.policy_path,
        detail=f"version {policy.version}, sha256 {policy.content_hash()}",
    )


def entry_ref(entry: AuditEntry, detail: str = "") -> Ref:
    """An audit log entry as evidence."""
    text = detail or f"{entry.action} {entry.target} by {entry.actor}: {entry.outcome}"
    return Ref(kind="audit_entry", ref=f"seq {entry.seq}", detail=f"{entry.ts[:19]}Z {text}")
