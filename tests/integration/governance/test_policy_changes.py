"""A change of the data policy is audited at the next run, and one that kept its version
(it skipped review) is reported: by the run's warning and as a gap of the compliance audit."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from vigie.config import Settings
from vigie.governance.policy import default_policy_path
from vigie.pipelines.run import run_pipeline

pytestmark = [pytest.mark.integration]

DAY = (date(2013, 1, 1), date(2013, 1, 1))


def changes(settings: Settings) -> list[dict[str, Any]]:
    lines = settings.audit_log_path.read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["action"] == "policy.change"]


def edit(policy: Path, *, version: int | None = None, describe: str | None = None) -> None:
    text = policy.read_text()
    if version is not None:
        text = re.sub(r"^version: \d+$", f"version: {version}", text, flags=re.MULTILINE)
    if describe is not None:  # what the data engineer role does: content, not a comment
        text = re.sub(r"^  data_engineer: .*$", f"  data_engineer: {describe}", text, flags=re.M)
    policy.write_text(text)


def test_a_policy_changed_without_its_version_raised_is_reported(
    tmp_path: Path, small_source: Path, make_settings: Callable[..., Settings],
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    policy = tmp_path / "policy.yaml"
    policy.write_text(default_policy_path().read_text())
    settings = make_settings(tmp_path / "home", small_source, policy_file=policy)
    run_pipeline(settings, *DAY)
    assert changes(settings) == []  # the first run records the policy, nothing changed

    edit(policy, describe="Builds the pipelines and reads what they store.")
    with caplog.at_level("WARNING", logger="vigie.pipelines.run"):
        run_pipeline(settings, *DAY)
    (skipped,) = changes(settings)
    assert skipped["outcome"] == "failure" and "without its version" in skipped["details"]["reason"]
    assert "version being raised" in caplog.text

    current = int(re.search(r"^version: (\d+)$", policy.read_text(), re.MULTILINE)[1])  # type: ignore[index]
    edit(policy, version=current + 1)
    run_pipeline(settings, *DAY)
    reviewed = changes(settings)[-1]
    assert reviewed["outcome"] == "success"
    assert reviewed["details"]["from_version"] == current
    assert reviewed["inputs"]["policy_version"] == current + 1
    run_pipeline(settings, *DAY)
    assert len(changes(settings)) == 2  # unchanged since: nothing more
