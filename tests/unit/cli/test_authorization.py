"""Commands that read or change data need a key whose role grants their permission.

``VIGIE_API_KEY`` carries the caller's key; in production mode a command without one is
refused, a key whose role lacks the permission is refused, and each refusal is in the audit
log. In local mode, the person at the command line of the home acts without a key.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from vigie.config import load_settings
from vigie.errors import EXIT_CODES, ErrorCode
from vigie.serving.auth import create_key

Cli = Callable[..., Result]
SECRET = "k" * 40


def production(home: Path, **values: str) -> dict[str, str | Path]:
    url = f"duckdb:///{home / 'warehouse.duckdb'}"
    return {"home": home, "mode": "production", "pseudonym_key": SECRET,
            "warehouse_url": url, **values}  # fmt: skip


def refusals(home: Path) -> list[dict[str, object]]:
    lines = (home / "audit" / "audit.jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    return [e for e in entries if e["action"] == "auth.check" and e["target"] == "cli"]


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, str]:
    settings = load_settings(home=tmp_path, mode="local")
    return {r: create_key(settings, r, actor="tests")[1] for r in ("predict", "sre", "admin")}


def test_production_refuses_a_command_without_a_key_and_audits_it(
    cli: Cli, tmp_path: Path, keys: dict[str, str]
) -> None:
    result = cli(["keys", "list"], **production(tmp_path))
    assert result.exit_code == EXIT_CODES[ErrorCode.UNAUTHENTICATED]
    assert "VIGIE_API_KEY" in result.output and "keys.manage" in result.output
    assert [e["details"]["reason"] for e in refusals(tmp_path)] == ["missing"]  # type: ignore[index]


def test_a_role_without_the_permission_is_refused_and_audited(
    cli: Cli, tmp_path: Path, keys: dict[str, str]
) -> None:
    result = cli(["keys", "list"], **production(tmp_path, api_key=keys["sre"]))
    assert result.exit_code == EXIT_CODES[ErrorCode.FORBIDDEN]
    assert "'sre'" in result.output and "admin" in result.output  # who may
    rollback = cli(
        ["registry", "rollback", "flight_delay"], **production(tmp_path, api_key=keys["predict"])
    )
    assert rollback.exit_code == EXIT_CODES[ErrorCode.FORBIDDEN]
    assert "registry.promote" in rollback.output
    reasons = [e["details"]["reason"] for e in refusals(tmp_path)]  # type: ignore[index]
    assert reasons == ["forbidden", "forbidden"]


def test_a_key_with_the_permission_is_let_through(
    cli: Cli, tmp_path: Path, keys: dict[str, str]
) -> None:
    result = cli(["keys", "list"], **production(tmp_path, api_key=keys["admin"]))
    assert result.exit_code == 0, result.output
    assert result.output.count("key_") >= 3
    assert refusals(tmp_path) == []


def test_local_mode_lets_the_homes_operator_act_without_a_key(
    cli: Cli, tmp_path: Path, keys: dict[str, str]
) -> None:
    assert cli(["keys", "list"], home=tmp_path).exit_code == 0
    wrong = cli(["keys", "list"], home=tmp_path, api_key="vk_0000000000000000_nothing")
    assert wrong.exit_code == EXIT_CODES[ErrorCode.UNAUTHENTICATED]  # a key given is checked
