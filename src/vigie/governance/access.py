"""Who may do what: one role model for people and services, default deny.

Every caller of vigie, a person at the command line or a process calling the service or the
sidecar, presents an API key; the key carries one role, and a role grants permissions.
The roles are the data policy's (``data_engineer``, ``ml_engineer``, ``sre``, ``auditor``,
``service``) and two of the service's own: ``predict`` (an application calling the
prediction endpoints) and ``admin`` (every permission). A permission not granted is
refused; the refusal is audited by whoever checks (the service's and the sidecar's
authenticator, the command line).

Which columns each role may read in the warehouse is the policy's ``readers``; this module
is about actions.
"""

from __future__ import annotations

from vigie.errors import ErrorCode, VigieError

#: Each permission and what it allows.
PERMISSIONS: dict[str, str] = {
    "predict": "call the prediction endpoints (REST, gRPC, /predict)",
    "monitor.read": "read the drift sidecar's pages, reports and JSON",
    "registry.promote": "promote a model version, roll production back",
    "model.train": "train, retrain and register candidates",
    "data.load": "run the pipeline, the warehouse migrations and the log ingestion",
    "data.retain": "apply the retention periods of the data policy",
    "data.erase": "erase a data subject from every store",
    "audit.read": "read and verify the audit log, build the compliance report",
    "keys.manage": "create, list and revoke API keys",
    "admin": "the service's administrative routes",
}

#: The permissions of each role.
GRANTS: dict[str, frozenset[str]] = {
    "predict": frozenset({"predict"}),
    "service": frozenset({"predict", "monitor.read"}),
    "sre": frozenset({"monitor.read", "registry.promote", "audit.read"}),
    "ml_engineer": frozenset({"predict", "monitor.read", "registry.promote", "model.train"}),
    "data_engineer": frozenset(
        {"monitor.read", "data.load", "data.retain", "data.erase", "audit.read"}
    ),
    "auditor": frozenset({"monitor.read", "audit.read"}),
    "admin": frozenset(PERMISSIONS),
}

#: The role of the person at the command line of a local-mode home, who owns its files.
LOCAL_OPERATOR = "local_operator"


def permits(role: str, permission: str) -> bool:
    """Whether ``role`` grants ``permission`` (an unknown role grants nothing).

    Raises:
        VigieError: INTERNAL for a permission that does not exist (a programming error).
    """
    if permission not in PERMISSIONS:
        raise VigieError(ErrorCode.INTERNAL, f"unknown permission {permission!r}")
    return permission in GRANTS.get(role, frozenset())


def require(role: str, permission: str, *, caller: str) -> None:
    """Refuse ``caller`` unless ``role`` grants ``permission``.

    Raises:
        VigieError: FORBIDDEN, naming the caller, its role and what it lacks.
    """
    if not permits(role, permission):
        raise VigieError(
            ErrorCode.FORBIDDEN,
            f"{caller} has role {role!r}, which does not grant {permission!r} "
            f"({PERMISSIONS[permission]})",
            role=role,
            permission=permission,
        )


def roles_with(permission: str) -> list[str]:
    """The roles that grant ``permission``, sorted."""
    return sorted(role for role, granted in GRANTS.items() if permission in granted)
