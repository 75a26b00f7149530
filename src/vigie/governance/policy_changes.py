"""Changes of the data policy, recorded and judged.

The policy is code reviewed like code, and its ``version`` says which review it passed. A
run that loads data records the policy's version and content hash in the audit log; the
next run compares the policy it reads with the last one recorded. A change is written to
the audit log (``policy.change``) with who made the run: as a success when the version was
raised, as a failure when the content changed under the same version (a change that
skipped review), which the compliance audit reports as a gap until the version is raised.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from vigie.governance.audit import AuditEntry, AuditLog, Outcome, read_entries

#: The audit action of a change of the policy.
POLICY_CHANGE = "policy.change"
#: Actions whose entries record the policy in force (``policy_sha256``, ``policy_version``).
RECORDING_ACTIONS = frozenset({"pipeline.run", POLICY_CHANGE})


@dataclass(frozen=True)
class PolicyState:
    """The policy as one entry recorded it (the version is None in entries made before
    versions were recorded)."""

    version: int | None
    sha256: str


def state_of(entry: AuditEntry) -> PolicyState | None:
    """The policy state an audit entry recorded, if it recorded one."""
    if entry.action not in RECORDING_ACTIONS:
        return None
    sha256 = entry.inputs.get("policy_sha256")
    if not isinstance(sha256, str):
        return None
    version = entry.inputs.get("policy_version")
    return PolicyState(version if isinstance(version, int) else None, sha256)


def last_recorded(entries: Iterable[AuditEntry]) -> PolicyState | None:
    """The policy state of the last entry that recorded one."""
    found: PolicyState | None = None
    for entry in entries:
        found = state_of(entry) or found
    return found


def unreviewed(previous: PolicyState | None, current: PolicyState) -> bool:
    """Whether going from ``previous`` to ``current`` changed the content, not the version."""
    if previous is None or previous.sha256 == current.sha256:
        return False
    return previous.version is not None and previous.version >= (current.version or 0)


def record_change(audit_path: Path, current: PolicyState, *, actor: str, source: str) -> bool:
    """Write a ``policy.change`` entry when the policy differs from the last recorded one.

    Returns:
        True when the change kept its version (content changed without review).
    """
    previous = last_recorded(read_entries(audit_path))
    if previous is None or previous.sha256 == current.sha256:
        return False
    skipped = unreviewed(previous, current)
    AuditLog(audit_path).append(
        actor,
        POLICY_CHANGE,
        source,
        Outcome.FAILURE if skipped else Outcome.SUCCESS,
        inputs={"policy_sha256": current.sha256, "policy_version": current.version},
        details={
            "from_version": previous.version,
            "from_sha256": previous.sha256,
            "reason": "content changed without its version being raised"
            if skipped
            else "version raised",
        },
    )
    return skipped
