"""API keys: creation, the per-request check, revocation, local generation, audit."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from vigie.config import Settings
from vigie.errors import ErrorCode, VigieError
from vigie.governance.audit import AuditLog, verify
from vigie.serving.auth import (
    Authenticator,
    create_key,
    ensure_local_keys,
    list_keys,
    parse_bearer,
    revoke_key,
)


@pytest.fixture
def settings(tmp_path: Path, make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(tmp_path / "home", None)


def audit_entries(settings: Settings, action: str) -> list[dict[str, Any]]:
    lines = settings.audit_log_path.read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["action"] == action]


def refused(auth: Authenticator, token: str | None, role: str = "predict") -> VigieError:
    with pytest.raises(VigieError) as caught:
        auth.check(token, role, "v2-rest")
    return caught.value


def test_created_key_authenticates_as_its_id(settings: Settings) -> None:
    key_id, token = create_key(settings, "predict", actor="alice")
    assert key_id.startswith("key_") and key_id[4:] in token
    assert Authenticator(settings).check(token, "predict", "v2-rest") == key_id


def test_admin_implies_predict_but_predict_is_not_admin(settings: Settings) -> None:
    admin_id, admin = create_key(settings, "admin", actor="alice")
    _, predict = create_key(settings, "predict", actor="alice")
    auth = Authenticator(settings)
    assert auth.check(admin, "predict", "v2-grpc") == admin_id
    assert auth.check(admin, "admin", "v2-grpc") == admin_id
    assert refused(auth, predict, "admin").code is ErrorCode.FORBIDDEN


@pytest.mark.parametrize(
    "token",
    [None, "", "Bearer", "not-a-key", "vk_" + "0" * 16 + "_" + "A" * 43],
    ids=["none", "empty", "junk", "other", "unknown-id"],
)
def test_missing_or_unknown_key_is_unauthenticated(settings: Settings, token: str | None) -> None:
    create_key(settings, "admin", actor="alice")
    assert refused(Authenticator(settings), token).code is ErrorCode.UNAUTHENTICATED


def test_known_id_with_wrong_secret_is_unauthenticated(settings: Settings) -> None:
    _, token = create_key(settings, "admin", actor="alice")
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert refused(Authenticator(settings), forged).code is ErrorCode.UNAUTHENTICATED


def test_a_forged_secret_is_refused_after_the_real_key_was_accepted(settings: Settings) -> None:
    key_id, token = create_key(settings, "predict", actor="alice")
    auth = Authenticator(settings)
    assert auth.check(token, "predict", "v2-rest") == key_id  # now remembered as verified
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert refused(auth, forged).code is ErrorCode.UNAUTHENTICATED
    assert auth.check(token, "predict", "v2-rest") == key_id
    assert refused(auth, token, "admin").code is ErrorCode.FORBIDDEN  # roles still checked


def test_revoked_key_is_refused_by_a_running_authenticator(settings: Settings) -> None:
    key_id, token = create_key(settings, "predict", actor="alice")
    auth = Authenticator(settings, refresh_s=0)
    assert auth.check(token, "predict", "rest") == key_id
    revoke_key(settings, key_id, actor="bob")
    error = refused(auth, token)
    assert error.code is ErrorCode.UNAUTHENTICATED and "revoked" in error.message
    revoked = next(r for r in list_keys(settings) if r.id == key_id)
    assert revoked.revoked_by == "bob" and revoked.revoked_at is not None


def test_revoking_an_unknown_key_is_not_found(settings: Settings) -> None:
    with pytest.raises(VigieError) as caught:
        revoke_key(settings, "key_0000000000000000", actor="bob")
    assert caught.value.code is ErrorCode.NOT_FOUND


def test_expired_key_is_refused(settings: Settings) -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)
    _, token = create_key(settings, "predict", actor="alice", expires_at=past)
    error = refused(Authenticator(settings), token)
    assert error.code is ErrorCode.UNAUTHENTICATED and "expired" in error.message


def test_unknown_role_cannot_be_created(settings: Settings) -> None:
    with pytest.raises(VigieError) as caught:
        create_key(settings, "root", actor="alice")
    assert caught.value.code is ErrorCode.INVALID_INPUT


def test_checks_are_served_from_memory_not_from_the_file(settings: Settings) -> None:
    key_id, token = create_key(settings, "predict", actor="alice")
    auth = Authenticator(settings, refresh_s=3600)
    assert auth.check(token, "predict", "rest") == key_id
    settings.api_keys_file.write_text("not json")  # would be refused if it were read again
    assert auth.check(token, "predict", "rest") == key_id


def test_key_file_is_private_and_holds_no_plaintext(settings: Settings) -> None:
    _, token = create_key(settings, "admin", actor="alice")
    path = settings.api_keys_file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert token not in text and token.rsplit("_", 1)[1] not in text
    record = json.loads(text)["keys"][0]
    assert {"id", "sha256", "role", "created_at", "created_by"} <= record.keys()


def test_local_keys_are_generated_once(settings: Settings) -> None:
    path = ensure_local_keys(settings)
    assert path == settings.home / "secrets" / "api_keys.local"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    values = dict(
        line.split("=", 1) for line in path.read_text().splitlines() if not line.startswith("#")
    )
    auth = Authenticator(settings)
    assert auth.check(values["VIGIE_ADMIN_KEY"], "admin", "rest").startswith("key_")
    assert refused(auth, values["VIGIE_PREDICT_KEY"], "admin").code is ErrorCode.FORBIDDEN
    before = settings.api_keys_file.read_bytes()
    assert ensure_local_keys(settings) is None
    assert settings.api_keys_file.read_bytes() == before
    assert all(v not in before.decode() for v in values.values())


def test_concurrent_first_starts_generate_one_pair(settings: Settings) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: ensure_local_keys(settings), range(4)))
    assert sum(r is not None for r in results) == 1
    assert sorted(r.role for r in list_keys(settings)) == ["admin", "predict"]


def test_production_mode_generates_no_key(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    prod = make_settings(
        tmp_path / "home",
        None,
        warehouse_url=f"duckdb:///{tmp_path / 'w.duckdb'}",
        mode="production",
        pseudonym_key="k" * 40,
    )
    assert ensure_local_keys(prod) is None
    assert not prod.api_keys_file.exists()
    assert refused(Authenticator(prod), "anything").code is ErrorCode.UNAUTHENTICATED


def test_admin_actions_and_refusals_are_audited_without_the_token(settings: Settings) -> None:
    key_id, token = create_key(settings, "predict", actor="alice")
    auth = Authenticator(settings, audit_interval_s=0)
    refused(auth, None)
    refused(auth, token + "x")
    refused(auth, token, "admin")
    revoke_key(settings, key_id, actor="bob")
    assert [e["actor"] for e in audit_entries(settings, "apikey.create")] == ["alice"]
    assert [e["actor"] for e in audit_entries(settings, "apikey.revoke")] == ["bob"]
    checks = audit_entries(settings, "auth.check")
    assert [e["details"]["reason"] for e in checks] == ["missing", "unknown_key", "forbidden"]
    assert {e["outcome"] for e in checks} == {"refused"}
    assert checks[2]["actor"] == key_id
    assert token not in settings.audit_log_path.read_text()
    assert verify(settings.audit_log_path).ok


def test_a_flood_of_failures_is_audited_once_per_window(settings: Settings) -> None:
    auth = Authenticator(settings, audit_interval_s=3600)
    for _ in range(50):
        refused(auth, "wrong")
    refused(Authenticator(settings, audit=AuditLog(settings.audit_log_path)), None)
    checks = audit_entries(settings, "auth.check")
    assert [(e["details"]["reason"], e["target"]) for e in checks] == [
        ("unknown_key", "v2-rest"),
        ("missing", "v2-rest"),
    ]
    assert verify(settings.audit_log_path).ok


def test_suppressed_failures_are_counted_on_the_next_entry(settings: Settings) -> None:
    auth = Authenticator(settings, audit_interval_s=0.05)
    for _ in range(5):
        refused(auth, "wrong")
    deadline = datetime.now(UTC) + timedelta(seconds=10)
    while len(audit_entries(settings, "auth.check")) < 2 and datetime.now(UTC) < deadline:
        refused(auth, "wrong")
    checks = audit_entries(settings, "auth.check")
    assert checks[0]["details"]["suppressed"] == 0
    assert checks[1]["details"]["suppressed"] >= 4


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("Basic abc", None),
        ("Bearer ", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_bearer(header: str | None, expected: str | None) -> None:
    assert parse_bearer(header) == expected
