"""The security-of-processing item of the compliance audit (GDPR Art. 32)."""

from __future__ import annotations

from vigie.governance.access import GRANTS
from vigie.governance.compliance_facts import Evidence
from vigie.governance.compliance_items import Item, Ref, gap, make_item, plural, table


def security_of_processing(evidence: Evidence) -> Item:
    """Art. 32: keys hashed, roles defined, audit chain intact, no placeholder secret."""
    checks = _security_checks(evidence)
    gaps = [gap(f"{what}: {detail}", remedy) for what, ok, detail, remedy in checks if not ok]
    audit = evidence.audit
    refs = [
        Ref(kind="key_file", ref=evidence.keys.path, detail=plural(evidence.keys.keys, "key")),
        Ref(kind="audit_log", ref=audit.path, detail=_chain_text(evidence)),
        Ref(kind="setting", ref="VIGIE_MODE", detail=evidence.mode),
    ]
    if audit.anchor:
        refs.append(Ref(kind="file", ref=audit.anchor[2], detail=f"anchor seq {audit.anchor[0]}"))
    return make_item(
        "gdpr.art32.security",
        summary=f"{len(checks) - len(gaps)} of {plural(len(checks), 'check')} passed.",
        evidence=refs,
        gaps=gaps,
        tables=[
            table(
                "Checks",
                ("check", "result", "detail"),
                [(w, "passed" if ok else "failed", d) for w, ok, d, _ in checks],
            )
        ],
    )


def _security_checks(evidence: Evidence) -> list[tuple[str, bool, str, str]]:
    keys = evidence.keys
    key_detail = "; ".join(keys.problems) or (
        f"{plural(keys.keys, 'key')}, each stored as its SHA-256 only"
        if keys.present
        else "no key file: the services accept no key until one is created"
    )
    undefined = sorted(set(evidence.policy.roles) - set(GRANTS))
    verification = evidence.audit.verification
    checks = [
        (
            "API keys stored hashed",
            not keys.problems,
            key_detail,
            "revoke every key of the file, create new ones (vigie keys create) and keep the "
            "file mode 0600",
        ),
        (
            "roles defined",
            not undefined,
            f"roles without permissions: {', '.join(undefined)}"
            if undefined
            else f"every policy role has its permissions ({', '.join(sorted(GRANTS))})",
            "give each policy role its permissions in vigie.governance.access",
        ),
        (
            "audit chain intact",
            bool(verification and verification.ok),
            _chain_text(evidence),
            "keep the damaged log as evidence, investigate, and start a new log whose first "
            "entry records the old log's head (docs/governance.md, Recovery)",
        ),
    ]
    checks += [
        (what, ok, detail, "set a real secret from a secret store, never a placeholder")
        for what, ok, detail in evidence.secrets.checks
    ]
    return checks


def _chain_text(evidence: Evidence) -> str:
    audit = evidence.audit
    if not audit.present or audit.verification is None:
        return "no audit log"
    result = audit.verification
    if not result.ok:
        return f"verification failed: {result.problem}"
    anchored = (
        f", matches the head seq {audit.anchor[0]} of {audit.anchor[2]}" if audit.anchor else ""
    )
    return f"{plural(result.entries, 'entry', 'entries')}, chain intact{anchored}"
