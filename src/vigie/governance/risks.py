"""Data risk assessment: a register of quality and security risks per dataset and per model.

The register is computed from the system's own evidence (:class:`Evidence`) by fixed
rules, so the same evidence always gives the same register. Subjects are every table of
the data policy (a *dataset*) and every registered model (its production version, else its
staging version, else its latest). Each subject gets a quality risk and a security risk,
each scored ``likelihood x impact``, both from 1 to 5.

Quality, dataset *T* (history: the quality report of every pipeline run, oldest first,
and the failed runs recorded in the warehouse):

- likelihood from the quarantine rate of *T* in the latest run that loaded it (rows
  quarantined / rows in): 0 gives 1, under 0.1 % gives 2, under 1 % 3, under 5 % 4, else 5;
  +1 when that rate is above 1.1 times the mean of the (up to four) runs before it (a
  rising trend); +1 when one of the last five runs failed; 3 when no run has loaded *T*
  (quality not measured); at most 5.
- impact: 1; +2 when a registered model's input features come from *T*; +1 when a
  model's label comes from *T*; +1 when such a model is in production; at most 5.

Quality, model *M*: likelihood, the highest quality likelihood of the tables its features
and label come from; impact 4 in production, 3 in staging, 2 otherwise.

Security (dataset *T*, or model *M* over the columns its features and label come from):

- impact: the classification of the most sensitive column stored (``public`` 1,
  ``internal`` 2, ``indirect_identifier`` 3, ``personal`` 4, ``sensitive`` 5); columns the
  policy drops are never stored and do not count.
- likelihood: 1 plus exposure points over those most sensitive columns, at most 5:
  readers (roles allowed to read them) 2-3 give 1 point, 4 or more give 2;
  copies beyond the warehouse holding them (landing zone, training snapshots, candidate
  folders, registry reference samples, payload log, quality reports, drift reports)
  1-2 give 1 point, 3 or more give 2; the longest retention over a year gives 1 point,
  over seven years 2.

Score = likelihood x impact. Status: ``open`` from 15 (to treat now), ``monitored`` from 8,
``accepted`` below. Owner (a role of the policy): ``data_engineer`` for datasets,
``sre`` for the fields of requests (the ``services`` table of the payload log),
``ml_engineer`` for models; the first role of the policy when that role is not declared.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from vigie.governance.compliance_facts import Evidence, QualityFacts, VersionFacts
from vigie.governance.compliance_risk_rules import (
    copies_of,
    quality_likelihood,
    quality_mitigation,
    security_likelihood,
    security_mitigation,
)
from vigie.governance.policy import Classification, ColumnPolicy, DataPolicy, Handling

#: Where the register is written, under the reports folder.
RISKS_FOLDER = "risks"
#: Score from which a risk is ``open``, and from which it is ``monitored``.
OPEN_FROM = 15
MONITORED_FROM = 8
#: The policy table whose fields the payload log keeps (requests to the services).
PAYLOAD_TABLE = "services"
#: Weight of each classification in the security impact.
LEVELS = {
    Classification.PUBLIC: 1,
    Classification.INTERNAL: 2,
    Classification.INDIRECT_IDENTIFIER: 3,
    Classification.PERSONAL: 4,
    Classification.SENSITIVE: 5,
}


class Risk(BaseModel):
    """One line of the register.

    Attributes:
        id: ``DQ-<table>``, ``SEC-<table>``, ``DQ-model-<model>``, ``SEC-model-<model>``.
        subject: The dataset or ``model <name> v<version>``.
        subject_kind: ``dataset`` or ``model``.
        kind: ``quality`` or ``security``.
        likelihood: 1 to 5.
        impact: 1 to 5.
        score: likelihood x impact.
        owner: The policy role that treats it.
        mitigation: What to do about it.
        status: ``open``, ``monitored`` or ``accepted``.
        summary: What drives the score.
        evidence: Where the facts come from (run ids, report paths, policy columns).
        trend: Quarantine rate per run, oldest first (dataset quality risks).
    """

    model_config = ConfigDict(frozen=True)

    id: str
    subject: str
    subject_kind: str
    kind: str
    likelihood: int = Field(ge=1, le=5)
    impact: int = Field(ge=1, le=5)
    score: int
    owner: str
    mitigation: str
    status: str
    summary: str
    evidence: list[str] = Field(default_factory=list)
    trend: list[tuple[str, float]] = Field(default_factory=list)


class RiskRegister(BaseModel):
    """The whole register, highest score first."""

    model_config = ConfigDict(frozen=True)

    generated_at: str
    subjects: list[str]
    open_from: int = OPEN_FROM
    monitored_from: int = MONITORED_FROM
    risks: list[Risk]


@dataclass(frozen=True)
class _Subject:
    """What a risk is about: a name, its columns and who uses them."""

    risk_id: str
    name: str
    kind: str
    owner_role: str
    columns: dict[str, ColumnPolicy]


def assess(evidence: Evidence) -> RiskRegister:
    """Build the register from the evidence (the rules of this module's docstring)."""
    policy = evidence.policy
    risks: list[Risk] = []
    likelihoods: dict[str, int] = {}
    for table in policy.tables:
        quality = _dataset_quality(evidence, table)
        likelihoods[table] = quality.likelihood
        risks += [quality, _security(evidence, _dataset_subject(policy, table))]
    models = subject_versions(evidence.services.versions)
    for version in models:
        risks += [
            _model_quality(policy, version, likelihoods),
            _security(evidence, _model_subject(policy, version)),
        ]
    risks.sort(key=lambda r: (-r.score, r.id))
    subjects = list(policy.tables) + [f"model {v.model}" for v in models]
    return RiskRegister(
        generated_at=evidence.generated_at.isoformat(timespec="seconds"),
        subjects=subjects,
        risks=risks,
    )


def subject_versions(versions: Sequence[VersionFacts]) -> list[VersionFacts]:
    """One version per model: production, else staging, else the latest registered."""
    chosen: dict[str, VersionFacts] = {}
    rank = {"production": 0, "staging": 1}
    for version in versions:
        current = chosen.get(version.model)
        mine = min((rank[a] for a in version.aliases if a in rank), default=2)
        theirs = min((rank[a] for a in current.aliases if a in rank), default=2) if current else 3
        newer = current is None or (mine == theirs and _later(version, current))
        if mine < theirs or newer:
            chosen[version.model] = version
    return [chosen[m] for m in sorted(chosen)]


def _later(a: VersionFacts, b: VersionFacts) -> bool:
    return (a.version.isdecimal() and b.version.isdecimal()) and int(a.version) > int(b.version)


def _dataset_quality(evidence: Evidence, table: str) -> Risk:
    history = [q for q in evidence.quality if table in q.counts]
    failed = [r.run_id for r in evidence.services.runs[-5:] if r.status == "failed"]
    score = quality_likelihood(_rates(history, table), bool(failed))
    impact, uses = _dataset_impact(evidence, table)
    latest = history[-1] if history else None
    return _risk(
        risk_id=f"DQ-{table}",
        subject=table,
        subject_kind="dataset",
        kind="quality",
        scores=(score.likelihood, impact),
        owner=_owner(evidence.policy, table),
        mitigation=quality_mitigation(score, table, _top_checks(latest, table), failed),
        summary=f"{'; '.join(score.factors)}; {uses}",
        evidence=[q.path for q in history[-5:]] + [f"failed run {r}" for r in failed],
        trend=[(q.run_id, round(_rate(q, table), 6)) for q in history],
    )


def _rates(history: Sequence[QualityFacts], table: str) -> list[float]:
    return [_rate(q, table) for q in history]


def _rate(report: QualityFacts, table: str) -> float:
    counts = report.counts[table]
    return counts.rows_quarantined / counts.rows_in if counts.rows_in else 0.0


def _top_checks(report: QualityFacts | None, table: str) -> list[tuple[str, int]]:
    if report is None:
        return []
    failures = report.failures.get(table, {})
    return sorted(((c, n) for c, n in failures.items() if n), key=lambda x: (-x[1], x[0]))[:3]


def _dataset_impact(evidence: Evidence, table: str) -> tuple[int, str]:
    models = subject_versions(evidence.services.versions)
    feeding = [v for v in models if any(s.startswith(f"{table}.") for s in _sources(v))]
    labelling = [v for v in models if any(s.startswith(f"{table}.") for s in v.target_sources)]
    impact = 1 + (2 if feeding else 0) + (1 if labelling else 0)
    impact += 1 if any("production" in v.aliases for v in feeding + labelling) else 0
    names = sorted({v.model for v in feeding + labelling})
    uses = f"feeds {', '.join(names)}" if names else "feeds no registered model"
    return min(impact, 5), uses


def _model_quality(policy: DataPolicy, version: VersionFacts, likelihoods: dict[str, int]) -> Risk:
    tables = sorted({s.split(".", 1)[0] for s in (*_sources(version), *version.target_sources)})
    likelihood = max((likelihoods.get(t, 3) for t in tables), default=3)
    impact = 4 if "production" in version.aliases else 3 if "staging" in version.aliases else 2
    worst = [t for t in tables if likelihoods.get(t, 3) == likelihood]
    return _risk(
        risk_id=f"DQ-model-{version.model}",
        subject=f"model {version.model} v{version.version}",
        subject_kind="model",
        kind="quality",
        scores=(likelihood, impact),
        owner=_role(policy, "ml_engineer"),
        mitigation=f"watch the data quality of {', '.join(worst) or 'its sources'} (the "
        f"dataset risks DQ-{', DQ-'.join(worst) or '?'}); retrain only on runs whose quality "
        "reports pass",
        summary=f"its inputs come from {', '.join(tables) or 'unknown tables'}; "
        f"aliases {', '.join(version.aliases) or 'none'}",
        evidence=[version.manifest],
    )


def _dataset_subject(policy: DataPolicy, table: str) -> _Subject:
    owner = "sre" if table == PAYLOAD_TABLE else "data_engineer"
    columns = {f"{table}.{n}": c for n, c in policy.tables[table].columns.items()}
    return _Subject(f"SEC-{table}", table, "dataset", owner, columns)


def _model_subject(policy: DataPolicy, version: VersionFacts) -> _Subject:
    columns = {}
    for source in (*_sources(version), *version.target_sources):
        table, _, name = source.partition(".")
        if table in policy.tables and name in policy.tables[table].columns:
            columns[source] = policy.tables[table].columns[name]
    return _Subject(
        f"SEC-model-{version.model}",
        f"model {version.model} v{version.version}",
        "model",
        "ml_engineer",
        columns,
    )


def _security(evidence: Evidence, subject: _Subject) -> Risk:
    stored = {n: c for n, c in subject.columns.items() if c.handling is not Handling.DROP}
    impact = max((LEVELS[c.classification] for c in stored.values()), default=1)
    exposed = {n: c for n, c in stored.items() if LEVELS[c.classification] == impact}
    readers = sorted({r for c in exposed.values() for r in c.readers})
    retention = max((c.retention_days for c in exposed.values()), default=0)
    copies = copies_of(evidence, set(exposed), payload_table=PAYLOAD_TABLE)
    exposure = security_likelihood(len(readers), copies, retention)
    columns = _short(sorted(exposed)) or "no stored column"
    facts = [
        f"policy {n}: {c.classification.value}, {c.handling.value}, retention {c.retention}"
        for n, c in sorted(exposed.items())
    ]
    return _risk(
        risk_id=subject.risk_id,
        subject=subject.name,
        subject_kind=subject.kind,
        kind="security",
        scores=(exposure.likelihood, impact),
        owner=_role(evidence.policy, subject.owner_role),
        mitigation=security_mitigation(exposure, columns, copies),
        summary=f"most sensitive stored: {columns} (impact {impact}); "
        + "; ".join(exposure.factors),
        evidence=facts[:6] + [f"copy: {c}" for c in copies],
    )


def _risk(
    *,
    risk_id: str,
    subject: str,
    subject_kind: str,
    kind: str,
    scores: tuple[int, int],
    owner: str,
    mitigation: str,
    summary: str,
    evidence: list[str],
    trend: list[tuple[str, float]] | None = None,
) -> Risk:
    likelihood, impact = scores
    score = likelihood * impact
    status = (
        "open" if score >= OPEN_FROM else "monitored" if score >= MONITORED_FROM else "accepted"
    )
    return Risk(
        id=risk_id,
        subject=subject,
        subject_kind=subject_kind,
        kind=kind,
        likelihood=likelihood,
        impact=impact,
        score=score,
        owner=owner,
        mitigation=mitigation,
        status=status,
        summary=summary,
        evidence=evidence,
        trend=trend or [],
    )


def _owner(policy: DataPolicy, table: str) -> str:
    return _role(policy, "sre" if table == PAYLOAD_TABLE else "data_engineer")


def _role(policy: DataPolicy, wanted: str) -> str:
    return wanted if wanted in policy.roles else next(iter(policy.roles))


def _short(names: list[str], shown: int = 4) -> str:
    """``a, b, c, d and 6 more``."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _sources(version: VersionFacts) -> list[str]:
    return [s for f in version.features for s in f.sources]
