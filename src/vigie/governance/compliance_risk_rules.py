"""The scoring rules of the risk register (see :mod:`vigie.governance.risks`).

Pure functions of counts and rates: each returns its score with the factors that made it,
in words, so that a register line says why it scores what it scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vigie.governance.compliance_facts import Evidence

#: Quarantine-rate bounds: under each one the likelihood is 2, 3, 4; at or above, 5.
RATE_BOUNDS = (0.001, 0.01, 0.05)
#: A rate above this multiple of the mean of the runs before it is a rising trend.
RISING = 1.1
#: Runs before the latest compared for the trend.
TREND_RUNS = 4
#: Likelihood of a dataset no pipeline run has checked yet.
UNMEASURED = 3
#: Retention from which exposure counts 1, and 2 points (nominal days).
RETENTION_DAYS = (365, 7 * 365)


@dataclass(frozen=True)
class QualityScore:
    """A quality likelihood and what made it."""

    likelihood: int
    measured: bool
    rate: float
    rising: bool
    failed: bool

    @property
    def factors(self) -> list[str]:
        """The factors in words."""
        if not self.measured:
            return ["no pipeline run has checked it"]
        found = [f"quarantine rate {self.rate:.3%} in the latest run"]
        found += ["rising over the runs before"] if self.rising else []
        found += ["a recent run failed"] if self.failed else []
        return found


@dataclass(frozen=True)
class Exposure:
    """A security likelihood and the points that made it."""

    likelihood: int
    readers: int
    reader_points: int
    copies: int
    copy_points: int
    retention_days: int
    retention_points: int

    @property
    def factors(self) -> list[str]:
        """The factors in words."""
        return [
            f"{self.readers} role(s) may read them (+{self.reader_points})",
            f"{self.copies} copy place(s) beyond the warehouse (+{self.copy_points})",
            f"kept up to {self.retention_days} days (+{self.retention_points})",
        ]


def quality_likelihood(rates: Sequence[float], failed: bool) -> QualityScore:
    """Likelihood of a quality problem from the quarantine rates of the runs, oldest first."""
    if not rates:
        return QualityScore(UNMEASURED, False, 0.0, False, failed)
    rate = rates[-1]
    base = 1 if rate == 0 else 2 + sum(rate >= bound for bound in RATE_BOUNDS)
    before = list(rates[-1 - TREND_RUNS : -1])
    rising = bool(before) and rate > 0 and rate > RISING * (sum(before) / len(before))
    likelihood = min(5, base + int(rising) + int(failed))
    return QualityScore(likelihood, True, rate, rising, failed)


def quality_mitigation(
    score: QualityScore, table: str, top_checks: Sequence[tuple[str, int]], failed: Sequence[str]
) -> str:
    """What to do about a dataset's quality risk."""
    if not score.measured:
        return f"load {table} through a governed pipeline with expectations, or declare " + (
            "where its quality is checked"
        )
    actions = []
    if top_checks:
        named = ", ".join(f"{check} ({rows} rows)" for check, rows in top_checks)
        actions.append(f"review the quarantined records of {table} (most failed: {named})")
    if score.rising:
        actions.append("find what changed at the source since the quarantine rate rose")
    if failed:
        actions.append(f"read the error of the failed run(s) {', '.join(failed)} in the audit log")
    if not actions:
        actions.append("keep the expectations in force on every run")
    return "; ".join(actions)


def security_likelihood(readers: int, copies: Sequence[str], retention_days: int) -> Exposure:
    """Likelihood of disclosure from readers, copies and retention."""
    reader_points = 0 if readers <= 1 else 1 if readers <= 3 else 2
    copy_points = 0 if not copies else 1 if len(copies) <= 2 else 2
    retention_points = sum(retention_days > bound for bound in RETENTION_DAYS)
    likelihood = min(5, 1 + reader_points + copy_points + retention_points)
    return Exposure(
        likelihood,
        readers,
        reader_points,
        len(copies),
        copy_points,
        retention_days,
        retention_points,
    )


def security_mitigation(exposure: Exposure, columns: str, copies: Sequence[str]) -> str:
    """What to do about a security risk."""
    actions = []
    if exposure.reader_points:
        actions.append(f"narrow the readers of {columns} to the roles that need them")
    if any(c.startswith("landing zone") for c in copies):
        actions.append(
            "restrict the landing zone, which keeps values before pseudonymisation, to "
            "data_engineer and apply the retention periods to it"
        )
    if exposure.copy_points:
        actions.append("delete snapshots, candidates and reports past their retention")
    if exposure.retention_points:
        actions.append(f"shorten the retention of {columns} if the purposes allow it")
    return "; ".join(actions) or "keep the policy's handling and readers; review at each change"


def copies_of(evidence: Evidence, columns: set[str], *, payload_table: str) -> list[str]:
    """Places beyond the warehouse that hold values of ``columns`` (``table.column``)."""
    copies = evidence.copies
    tables = {c.split(".", 1)[0] for c in columns}
    model_columns = {
        s for v in evidence.services.versions for f in v.features for s in f.sources
    } | {s for v in evidence.services.versions for s in v.target_sources}
    used = bool(columns & model_columns)
    found = [f"landing zone: landing/{t} (raw)" for t in sorted(tables & copies.landing_tables)]
    if used:
        found += [
            text
            for count, text in (
                (copies.snapshots, f"training snapshots ({copies.snapshots} files)"),
                (copies.candidates, f"candidate folders ({copies.candidates})"),
                (copies.registry_versions, f"registry samples ({copies.registry_versions})"),
                (copies.monitoring_reports, f"drift reports ({copies.monitoring_reports})"),
            )
            if count
        ]
    if copies.payload_entries and (used or payload_table in tables):
        found.append(f"payload log ({copies.payload_entries} entries)")
    quality_tables = {t for q in evidence.quality for t in q.counts}
    if copies.quality_reports and tables & quality_tables:
        found.append(f"quality reports ({copies.quality_reports}, quarantined record keys)")
    return found
