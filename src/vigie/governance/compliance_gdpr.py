"""The GDPR items of the compliance audit (Art. 30, 5(1)(c), 35 here; 5(1)(e) and 17 in
:mod:`compliance_lifecycle`, 32 in :mod:`compliance_security`).

Each function judges one requirement from the :class:`Evidence` alone and returns an
:class:`Item`; the rules are in docs/audit.md.
"""

from __future__ import annotations

from collections import Counter

from vigie.governance.compliance_facts import Evidence, VersionFacts
from vigie.governance.compliance_items import (
    Gap,
    Item,
    Ref,
    gap,
    make_item,
    plural,
    policy_ref,
    table,
)
from vigie.governance.compliance_lifecycle import erasure, storage_limitation
from vigie.governance.compliance_security import security_of_processing
from vigie.governance.policy import PROTECTED, ColumnPolicy, DataPolicy, Handling, TablePolicy
from vigie.governance.policy_changes import POLICY_CHANGE, PolicyState, last_recorded, unreviewed


def gdpr_items(evidence: Evidence) -> list[Item]:
    """Every GDPR item, in article order."""
    return [
        records_of_processing(evidence),
        data_minimisation(evidence),
        storage_limitation(evidence),
        security_of_processing(evidence),
        erasure(evidence),
        dpia_inputs(evidence),
    ]


def records_of_processing(evidence: Evidence) -> Item:
    """Art. 30: each table's purposes, recipients (roles), retention and classification."""
    policy = evidence.policy
    gaps = [
        gap(
            f"table {name} is processed without a declared purpose",
            f"declare its purposes in the data policy (tables.{name}.purposes) or stop loading it",
        )
        for name, t in policy.tables.items()
        if not t.purposes
    ]
    return make_item(
        "gdpr.art30.records",
        summary=f"The data policy records {plural(len(policy.tables), 'table')} with "
        f"{plural(len(policy.purposes), 'purpose')} and {plural(len(policy.roles), 'role')}.",
        evidence=[policy_ref(evidence)],
        gaps=gaps + _unclassified_loads(evidence) + policy_change_gaps(evidence),
        tables=[
            table(
                "Records of processing, per table",
                ("table", "purposes", "recipients (roles)", "retention", "columns"),
                [_record(name, t) for name, t in policy.tables.items()],
            ),
            table(
                "Recipients: the roles of the policy",
                ("role", "what it does"),
                policy.roles.items(),
            ),
        ],
    )


def _record(name: str, policy: TablePolicy) -> tuple[str, ...]:
    stored = [c for c in policy.columns.values() if c.handling is not Handling.DROP]
    classes = Counter(c.classification.value for c in policy.columns.values())
    return (
        name,
        ", ".join(policy.purposes) or "none",
        ", ".join(sorted({r for c in stored for r in c.readers})) or "nobody",
        ", ".join(sorted({c.retention for c in stored})) or "not stored",
        ", ".join(f"{k} {v}" for k, v in sorted(classes.items())),
    )


def policy_change_gaps(evidence: Evidence) -> list[Gap]:
    """The policy's content changed under an unchanged version: at a recorded run (the
    ``policy.change`` failures since its version was last raised), or now, since the last
    recorded run."""
    entries = evidence.audit.entries
    policy = evidence.policy
    current = PolicyState(policy.version, policy.content_hash())
    remedy = (
        f"review the change and raise version in {evidence.policy_path} "
        f"(it is {policy.version}); the next pipeline run records it"
    )
    skipped = [
        e.seq
        for e in entries
        if e.action == POLICY_CHANGE
        and e.outcome == "failure"
        and e.inputs.get("policy_version") == policy.version
    ]
    gaps = [
        gap(f"the data policy changed without its version being raised (audit seq {seq})", remedy)
        for seq in skipped
    ]
    if unreviewed(last_recorded(entries), current):
        problem = "the data policy differs from the one the last run recorded, same version"
        gaps.append(gap(problem, remedy))
    return gaps


def _unclassified_loads(evidence: Evidence) -> list[Gap]:
    loaded = {t.table for run in evidence.services.runs for t in run.tables}
    loaded |= {name for q in evidence.quality for name in q.counts}
    return [
        gap(
            f"table {name} was loaded by a pipeline run but has no entry in the policy",
            f"classify every column of {name} in the data policy",
        )
        for name in sorted(loaded - set(evidence.policy.tables))
    ]


def data_minimisation(evidence: Evidence) -> Item:
    """Art. 5(1)(c): only the columns the policy allows reach training and serving."""
    versions = evidence.services.versions
    found = {v.ref: minimisation_problems(evidence.policy, v) for v in versions}
    gaps = [_source_gap(v, p) for v in versions for p in found[v.ref]]
    if evidence.services.registry_error:
        gaps.append(
            gap(
                f"the registry could not be read: {evidence.services.registry_error}",
                "check the registry (vigie registry list, vigie registry show) and run the "
                "audit again",
            )
        )
    refs = [
        Ref(
            kind="registry_version",
            ref=v.manifest,
            detail=f"{v.ref}: {plural(len(v.features), 'input feature')}",
        )
        for v in versions
    ]
    return make_item(
        "gdpr.art5.minimisation",
        summary=f"{plural(len(versions), 'registered model version')} checked: every input "
        "feature (the same inputs training used and serving accepts) must come from columns "
        "the policy allows as model inputs, or as history for aggregate features.",
        evidence=[policy_ref(evidence), *refs],
        gaps=gaps,
        tables=[
            table(
                "Input features of each registered version",
                ("version", "aliases", "features", "source columns", "verdict"),
                [_minimisation_row(v, not found[v.ref]) for v in versions],
            )
        ],
        applicable=bool(versions),
    )


def _minimisation_row(version: VersionFacts, allowed: bool) -> tuple[str, ...]:
    return (
        version.ref,
        ", ".join(version.aliases) or "none",
        str(len(version.features)),
        str(len({s for f in version.features for s in f.sources})),
        "allowed" if allowed else "NOT allowed",
    )


def allowed_sources(policy: DataPolicy) -> tuple[set[str], set[str], set[str]]:
    """``table.column`` allowed as model inputs, as history sources, and as targets."""
    columns = [
        (f"{table_name}.{name}", column)
        for table_name, t in policy.tables.items()
        for name, column in t.columns.items()
    ]
    return (
        {name for name, c in columns if c.training},
        {name for name, c in columns if c.training or c.history},
        {name for name, c in columns if c.target},
    )


def minimisation_problems(policy: DataPolicy, version: VersionFacts) -> list[str]:
    """Each input feature or label of ``version`` that the policy does not allow."""
    inputs, history, targets = allowed_sources(policy)
    problems = []
    for feature in version.features:
        refused = [s for s in feature.sources if s not in (history if feature.history else inputs)]
        if not feature.sources:
            problems.append(f"feature {feature.name} has no known source column")
        elif refused:
            use = "history" if feature.history else "a model input"
            problems.append(
                f"feature {feature.name} derives from {', '.join(refused)}, not allowed as {use}"
            )
    problems += [
        f"its label comes from {s}, not a target in the policy"
        for s in version.target_sources
        if s not in targets
    ]
    return problems


def _source_gap(version: VersionFacts, problem: str) -> Gap:
    return gap(
        f"{version.ref}: {problem}",
        f"remove the feature from models/{version.model}/spec.yaml, retrain and archive this "
        "version; or have the data policy reviewed to allow the column",
    )


def dpia_inputs(evidence: Evidence) -> Item:
    """Art. 35: the inputs of a data protection impact assessment."""
    policy = evidence.policy
    columns = [
        (f"{table_name}.{name}", column)
        for table_name, t in policy.tables.items()
        for name, column in t.columns.items()
    ]
    counts = Counter(
        (c.classification.value, "dropped" if c.handling is Handling.DROP else "stored")
        for _, c in columns
    )
    protected = [(name, c) for name, c in columns if c.classification.value in PROTECTED]
    purposes = [
        (name, text, ", ".join(t for t, p in policy.tables.items() if name in p.purposes))
        for name, text in policy.purposes.items()
    ]
    return make_item(
        "gdpr.art35.dpia",
        summary=f"{plural(len(protected), 'column')} identify or concern a subject; "
        f"{plural(len(purposes), 'purpose')} declared.",
        evidence=[policy_ref(evidence)],
        gaps=[_input_gap(name, c) for name, c in protected if c.training],
        tables=[
            table(
                "Columns per classification",
                ("classification", "handling", "columns"),
                [(c, s, str(n)) for (c, s), n in sorted(counts.items())],
            ),
            table(
                "Data subjects: identifying or sensitive columns",
                ("column", "classification", "handling", "readers", "retention", "why"),
                [_subject(name, c) for name, c in protected],
            ),
            table("Purposes", ("purpose", "description", "tables"), purposes),
        ],
    )


def _subject(name: str, column: ColumnPolicy) -> tuple[str, ...]:
    return (
        name,
        column.classification.value,
        column.handling.value,
        ", ".join(column.readers) or "nobody",
        column.retention,
        column.description or "-",
    )


def _input_gap(name: str, column: ColumnPolicy) -> Gap:
    return gap(
        f"{name} ({column.classification.value}) may be a model input",
        "set training: false for it, or document in the DPIA why a model needs it",
    )
