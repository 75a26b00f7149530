"""``promote_version``: refusals, the promotion without a service, live checks and rollback."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from vigie.config import Settings
from vigie.errors import EXIT_CODES, ErrorCode
from vigie.registry import REQUIRED_ROLES, Registry
from vigie.retraining.live_checks import CheckResult, LoadLimits
from vigie.retraining.promotion import PromotionOptions, PromotionReport, promote_version

MODEL = "flight_delay"
OK = CheckResult(True, "ok")


class FakeChecker:
    """A live checker whose answers the test chooses; it records what it was asked."""

    url = "http://fake:3000"

    def __init__(self, **fail: str) -> None:
        self.fail = fail
        self.calls: list[tuple[str, str | None]] = []

    def _result(self, name: str) -> CheckResult:
        if name in self.fail:
            return CheckResult(False, self.fail[name])
        return OK

    def unreachable(self) -> str | None:
        return self.fail.get("unreachable")

    def smoke(self, model: str, version: str | None, sample: pd.DataFrame, **_: Any) -> CheckResult:
        assert not sample.empty
        name = "smoke-staging" if version else "smoke-production"
        self.calls.append((name, version))
        return self._result(name)

    def wait_for(self, model: str, version: str, sample: pd.DataFrame, **_: Any) -> CheckResult:
        self.calls.append(("wait_for", version))
        return self._result(f"wait_for:{version}")

    def load(
        self, model: str, sample: pd.DataFrame, *, limits: LoadLimits, **_: Any
    ) -> CheckResult:
        self.calls.append(("load", None))
        return self._result("load")


@pytest.fixture
def settings(tmp_path: Path, make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(tmp_path / "home", None)


@pytest.fixture
def register(settings: Settings, tmp_path: Path) -> Callable[..., str]:
    """Register a version of MODEL with a real spec and reference sample; returns its id."""
    counter = iter(range(1000))

    def run(roc_auc: float = 0.8) -> str:
        folder = tmp_path / f"artifacts-{next(counter)}"
        folder.mkdir()
        files = {role: folder / role for role in REQUIRED_ROLES}
        for role, path in files.items():
            path.write_bytes(f"{role}\n".encode())
        spec = {"task": "classification", "gates": {"min": {"roc_auc": 0.7}}}
        files["spec.yaml"].write_text(yaml.safe_dump(spec))
        sample = pd.DataFrame({"carrier": ["UA", "AA"], "distance": [1400.0, 733.0]})
        sample.to_parquet(files["reference_sample.parquet"], index=False)
        metadata = {
            "snapshot_hash": "a" * 64,
            "code_version": "0.1.0+test",
            "metrics": {"roc_auc": roc_auc},
        }
        return Registry(settings).register(MODEL, files, metadata=metadata, reason="t").version

    return run


def aliases(settings: Settings) -> dict[str, str]:
    return Registry(settings).aliases(MODEL)


def audited(settings: Settings) -> list[str]:
    lines = settings.audit_log_path.read_text().splitlines()
    return [json.loads(line)["action"] for line in lines]


def outcomes(report: PromotionReport) -> dict[str, str]:
    return {step.name: step.outcome for step in report.steps}


def test_without_live_checks_promotes_and_says_the_checks_were_skipped(
    settings: Settings, register: Callable[..., str]
) -> None:
    version = register()
    report = promote_version(settings, MODEL, version, checker=None)
    assert report.error is None and report.exit_code == 0
    assert report.status == "promoted_without_live_checks"
    assert aliases(settings)["production"] == version == aliases(settings)["staging"]
    steps = outcomes(report)
    assert steps["gates"] == steps["staging"] == steps["production"] == "pass"
    assert steps["smoke-staging"] == steps["load-canary"] == "skipped"
    assert "skipped" in report.markdown() and "roc_auc" in report.markdown()
    actions = audited(settings)
    assert "promotion.gates" in actions and "promotion.production" in actions
    assert json.loads(report.to_json())["status"] == "promoted_without_live_checks"


@pytest.mark.parametrize(
    "case",
    [
        ("arrival_delay", "1", ErrorCode.MODEL_NOT_FOUND, "refused_unknown"),
        (MODEL, "9", ErrorCode.NOT_FOUND, "refused_unknown"),
        (MODEL, "abc", ErrorCode.INVALID_INPUT, "refused_invalid_input"),
        (MODEL, "1", ErrorCode.PROMOTION_REJECTED, "refused_not_candidate"),
    ],
)
def test_refusals_move_nothing(
    settings: Settings,
    register: Callable[..., str],
    case: tuple[str, str, ErrorCode, str],
) -> None:
    model, version, code, status = case
    register()
    register()  # version 2 is the candidate now
    before = aliases(settings)
    report = promote_version(settings, model, version, checker=FakeChecker())
    assert report.error is not None and report.error.code == code, report.error
    assert report.status == status
    assert aliases(settings) == before
    assert outcomes(report) == {"validate": "fail"}


def test_already_production_is_a_conflict_with_its_own_exit_status(
    settings: Settings, register: Callable[..., str]
) -> None:
    version = register()
    promote_version(settings, MODEL, version, checker=None)
    report = promote_version(settings, MODEL, version, checker=None)
    assert report.error is not None and report.error.code == ErrorCode.CONFLICT
    assert report.status == "refused_already_production"
    codes = {ErrorCode.CONFLICT, ErrorCode.NOT_FOUND, ErrorCode.PROMOTION_REJECTED}
    assert len({EXIT_CODES[c] for c in codes}) == 3


def test_failed_gates_reject_before_staging(
    settings: Settings, register: Callable[..., str]
) -> None:
    version = register(roc_auc=0.5)
    report = promote_version(settings, MODEL, version, checker=None)
    assert report.error is not None and report.error.code == ErrorCode.PROMOTION_REJECTED
    assert report.status == "gates_failed" and "roc_auc" in report.error.message
    assert "staging" not in aliases(settings)


def test_live_checks_pass_and_production_moves(
    settings: Settings, register: Callable[..., str]
) -> None:
    version = register()
    checker = FakeChecker()
    report = promote_version(settings, MODEL, version, checker=checker)
    assert report.status == "promoted" and report.error is None
    assert aliases(settings)["production"] == version
    assert [c[0] for c in checker.calls] == [
        "smoke-staging",
        "load",
        "wait_for",
        "smoke-production",
    ]
    assert set(outcomes(report).values()) == {"pass"}


def test_unreachable_service_refuses_before_moving_anything(
    settings: Settings, register: Callable[..., str]
) -> None:
    version = register()
    report = promote_version(
        settings, MODEL, version, checker=FakeChecker(unreachable="connection refused")
    )
    assert report.error is not None and report.error.code == ErrorCode.UNAVAILABLE
    assert "--skip-live-checks" in report.steps[-1].detail
    assert "staging" not in aliases(settings)


def test_a_failed_staging_smoke_leaves_production_alone(
    settings: Settings, register: Callable[..., str]
) -> None:
    first = register()
    promote_version(settings, MODEL, first, checker=None)
    second = register()
    report = promote_version(
        settings, MODEL, second, checker=FakeChecker(**{"smoke-staging": "NaN output"})
    )
    assert report.error is not None and report.error.code == ErrorCode.QUALITY_GATE
    assert report.status == "live_check_failed_before_production"
    assert aliases(settings)["production"] == first
    assert aliases(settings)["staging"] == second


@pytest.mark.parametrize("failing", ["wait_for:2", "smoke-production"])
def test_a_failed_post_promotion_check_rolls_back(
    settings: Settings, register: Callable[..., str], failing: str
) -> None:
    first = register()
    promote_version(settings, MODEL, first, checker=None)
    second = register()
    assert second == "2"
    checker = FakeChecker(**{failing: "not picked up"})
    report = promote_version(settings, MODEL, second, checker=checker)
    assert report.status == "rolled_back"
    assert report.error is not None and report.error.code == ErrorCode.QUALITY_GATE
    assert aliases(settings)["production"] == first
    assert outcomes(report)["rollback"] == "pass"
    assert ("wait_for", first) in checker.calls  # waits for the service to go back
    actions = audited(settings)
    assert "registry.rollback" in actions and "promotion.rollback" in actions


def test_a_first_release_cannot_roll_back_and_says_so(
    settings: Settings, register: Callable[..., str]
) -> None:
    version = register()
    report = promote_version(
        settings,
        MODEL,
        version,
        checker=FakeChecker(**{"smoke-production": "bad"}),
        options=PromotionOptions(smoke_requests=1),
    )
    assert report.status == "live_check_failed_rollback_impossible"
    assert outcomes(report)["rollback"] == "fail"
    assert report.error is not None and report.error.code == ErrorCode.QUALITY_GATE
