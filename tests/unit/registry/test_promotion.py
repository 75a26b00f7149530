"""Promotion through the aliases, archiving, rollback, and refused promotions."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from vigie.config import Settings
from vigie.errors import ErrorCode, VigieError
from vigie.governance.audit import verify as verify_audit
from vigie.registry import GateEvidence, GateSpec, ModelVersion, Registry, evaluate_gates

from .fakes import MODEL, passing_report


def _release(registry: Registry, version: str) -> None:
    registry.promote(MODEL, version, to="staging", report=None, reason=f"stage {version}")
    registry.promote(
        MODEL, version, to="production", report=passing_report(version), reason=f"ship {version}"
    )


def _audit(settings: Settings) -> list[dict[str, Any]]:
    return [json.loads(line) for line in settings.audit_log_path.read_text().splitlines()]


def test_candidate_to_staging_to_production(
    registry: Registry, settings: Settings, register: Callable[..., ModelVersion]
) -> None:
    register()
    change = registry.promote(MODEL, "candidate", to="staging", report=None, reason="try it")
    assert (change.alias, change.from_version, change.to_version) == ("staging", None, "1")
    change = registry.promote(
        MODEL, "1", to="production", report=passing_report("1"), reason="gates passed"
    )
    assert (change.alias, change.action, change.actor) == ("production", "promote", "vigie-tests")
    assert registry.aliases(MODEL) == {"candidate": "1", "staging": "1", "production": "1"}
    assert registry.get(MODEL, "production").version == "1"

    entry = _audit(settings)[-1]
    assert entry["action"] == "registry.promote"
    assert entry["target"] == f"{MODEL}/1"
    assert entry["details"] == {
        "alias": "production",
        "from_version": None,
        "to_version": "1",
        "reason": "gates passed",
        "gates": ["roc_auc 0.7 >= 0.68"],
    }
    assert verify_audit(settings.audit_log_path).ok


def test_replaced_production_version_is_archived(
    registry: Registry, settings: Settings, register: Callable[..., ModelVersion]
) -> None:
    register()
    _release(registry, "1")
    register()
    _release(registry, "2")

    assert registry.aliases(MODEL) == {
        "candidate": "2",
        "staging": "2",
        "production": "2",
        "archived": "1",
    }
    last = registry.history(MODEL)[-1]
    assert (last.alias, last.action, last.from_version, last.to_version) == (
        "archived",
        "archive",
        None,
        "1",
    )
    promote = _audit(settings)[-1]["details"]
    assert (promote["from_version"], promote["to_version"]) == ("1", "2")


def test_rollback_returns_to_previous_production_and_stacks(
    registry: Registry, settings: Settings, register: Callable[..., ModelVersion]
) -> None:
    for version in ("1", "2", "3"):
        register()
        _release(registry, version)

    change = registry.rollback(MODEL, reason="3 misbehaves")
    assert (change.alias, change.action, change.from_version, change.to_version) == (
        "production",
        "rollback",
        "3",
        "2",
    )
    assert registry.aliases(MODEL)["production"] == "2"
    assert registry.aliases(MODEL)["archived"] == "3"
    entry = _audit(settings)[-1]
    assert entry["action"] == "registry.rollback"
    assert (entry["details"]["from_version"], entry["details"]["to_version"]) == ("3", "2")

    registry.rollback(MODEL, reason="2 too")
    assert registry.aliases(MODEL)["production"] == "1"
    with pytest.raises(VigieError, match="no earlier production version") as err:
        registry.rollback(MODEL, reason="once more")
    assert err.value.code == ErrorCode.NOT_FOUND
    assert _audit(settings)[-1]["outcome"] == "refused"
    assert verify_audit(settings.audit_log_path).ok


def test_promotion_after_rollback_then_rollback_again(
    registry: Registry, register: Callable[..., ModelVersion]
) -> None:
    for version in ("1", "2"):
        register()
        _release(registry, version)
    registry.rollback(MODEL, reason="bad 2")
    register()
    _release(registry, "3")
    registry.rollback(MODEL, reason="bad 3")
    assert registry.aliases(MODEL)["production"] == "1"


def test_rollback_without_production_is_refused(
    registry: Registry, register: Callable[..., ModelVersion]
) -> None:
    register()
    with pytest.raises(VigieError) as err:
        registry.rollback(MODEL, reason="nothing there")
    assert err.value.code == ErrorCode.NOT_FOUND


def test_refused_promotions(
    registry: Registry, settings: Settings, register: Callable[..., ModelVersion]
) -> None:
    register()
    registry.promote(MODEL, "1", to="staging", report=None, reason="r")
    spec = GateSpec.model_validate({"metrics": {"roc_auc": {"min": 0.68}, "brier": {"max": 0.2}}})
    failing = evaluate_gates(
        spec, GateEvidence(model=MODEL, version="1", metrics={"roc_auc": 0.655, "brier": 0.1})
    )
    cases = [
        ("7", "staging", None, ErrorCode.NOT_FOUND, "has no version 7"),
        ("1", "staging", None, ErrorCode.CONFLICT, "already staging"),
        ("1", "production", failing, ErrorCode.PROMOTION_REJECTED, "roc_auc 0.655 < 0.68"),
        ("1", "production", None, ErrorCode.PROMOTION_REJECTED, "needs a gate report"),
        ("1", "production", passing_report("2"), ErrorCode.PROMOTION_REJECTED, "version 2"),
        ("1", "live", None, ErrorCode.INVALID_INPUT, "unknown alias 'live'"),
    ]
    for version, to, report, code, message in cases:
        with pytest.raises(VigieError) as err:
            registry.promote(MODEL, version, to=to, report=report, reason="try")
        assert err.value.code == code, message
        assert message in err.value.message
    with pytest.raises(VigieError) as err:
        registry.promote(MODEL, "1", to="production", report=failing, reason="try")
    assert "failed 1 gate(s): roc_auc 0.655 < 0.68 (short by 0.025)" in err.value.message
    assert err.value.details["failed_gates"] == ["metric:roc_auc"]

    assert registry.aliases(MODEL) == {"candidate": "1", "staging": "1"}
    refused = [e for e in _audit(settings) if e["outcome"] == "refused"]
    assert len(refused) == 6  # an unknown alias is refused before anything is looked up
    assert refused[2]["details"]["code"] == "PROMOTION_REJECTED"
    assert verify_audit(settings.audit_log_path).ok


def test_corrupt_version_cannot_be_promoted_or_rolled_back_to(
    registry: Registry, settings: Settings, register: Callable[..., ModelVersion]
) -> None:
    for version in ("1", "2"):
        register()
        _release(registry, version)
    onnx = settings.registry_dir / MODEL / "versions" / "1" / "model.onnx"
    onnx.chmod(0o644)
    onnx.write_bytes(b"tampered")
    with pytest.raises(VigieError) as err:
        registry.rollback(MODEL, reason="r")
    assert err.value.code == ErrorCode.ARTIFACT_CORRUPT
    with pytest.raises(VigieError) as err:
        registry.promote(MODEL, "1", to="staging", report=None, reason="r")
    assert err.value.code == ErrorCode.ARTIFACT_CORRUPT
    assert registry.aliases(MODEL)["production"] == "2"


def test_corrupt_aliases_file_is_reported(
    registry: Registry, settings: Settings, register: Callable[..., ModelVersion]
) -> None:
    register()
    (settings.registry_dir / MODEL / "aliases.json").write_text('{"model": "flight_delay", "al')
    with pytest.raises(VigieError) as err:
        registry.aliases(MODEL)
    assert err.value.code == ErrorCode.ARTIFACT_CORRUPT
