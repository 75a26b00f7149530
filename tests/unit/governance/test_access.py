"""The role model: the policy's roles and the service's, each with its permissions."""

from __future__ import annotations

import pytest

from vigie.errors import ErrorCode, VigieError
from vigie.governance.access import GRANTS, PERMISSIONS, permits, require, roles_with
from vigie.governance.policy import load_policy


def test_every_role_of_the_policy_has_its_permissions() -> None:
    assert set(load_policy().roles) == set(GRANTS) - {"predict", "admin"}


def test_grants_name_only_real_permissions_and_admin_has_them_all() -> None:
    assert all(granted <= set(PERMISSIONS) for granted in GRANTS.values())
    assert GRANTS["admin"] == frozenset(PERMISSIONS)


@pytest.mark.parametrize(
    ("role", "permission", "allowed"),
    [
        ("service", "predict", True),
        ("service", "monitor.read", True),
        ("service", "registry.promote", False),
        ("auditor", "audit.read", True),
        ("auditor", "data.erase", False),
        ("data_engineer", "data.erase", True),
        ("ml_engineer", "registry.promote", True),
        ("ml_engineer", "data.load", False),
        ("predict", "monitor.read", False),
        ("nobody", "predict", False),
    ],
)
def test_default_deny(role: str, permission: str, allowed: bool) -> None:
    assert permits(role, permission) is allowed


def test_a_refusal_names_the_caller_the_role_and_the_permission() -> None:
    with pytest.raises(VigieError) as caught:
        require("sre", "data.erase", caller="key_0123")
    assert caught.value.code is ErrorCode.FORBIDDEN
    assert all(s in caught.value.message for s in ("key_0123", "'sre'", "'data.erase'"))
    require("admin", "data.erase", caller="key_0123")


def test_an_unknown_permission_is_a_programming_error() -> None:
    with pytest.raises(VigieError) as caught:
        permits("admin", "everything")
    assert caught.value.code is ErrorCode.INTERNAL


def test_roles_with_lists_who_may() -> None:
    assert roles_with("data.erase") == ["admin", "data_engineer"]
