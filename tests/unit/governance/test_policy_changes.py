"""Which policy changes skipped review: content changed, version not raised."""

from __future__ import annotations

from pathlib import Path

from vigie.governance.audit import AuditLog, read_entries
from vigie.governance.policy_changes import (
    PolicyState,
    last_recorded,
    record_change,
    unreviewed,
)


def test_unreviewed_means_new_content_under_the_same_or_an_older_version() -> None:
    old = PolicyState(3, "a" * 64)
    assert not unreviewed(None, old)
    assert not unreviewed(old, PolicyState(3, "a" * 64))
    assert unreviewed(old, PolicyState(3, "b" * 64))
    assert unreviewed(old, PolicyState(2, "b" * 64))
    assert not unreviewed(old, PolicyState(4, "b" * 64))
    assert not unreviewed(PolicyState(None, "a" * 64), PolicyState(3, "b" * 64))  # unknown


def test_the_last_recording_entry_wins_and_others_are_ignored(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    for action, inputs in [
        ("pipeline.run", {"policy_sha256": "x", "policy_version": 1}),
        ("model.promote", {"policy_sha256": "y", "policy_version": 9}),
        ("policy.change", {"policy_sha256": "z", "policy_version": 2}),
        ("pipeline.run", {}),
    ]:
        log.append("t", action, "target", "success", inputs=inputs)
    assert last_recorded(read_entries(log.path)) == PolicyState(2, "z")


def test_record_change_writes_only_a_change(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    assert not record_change(path, PolicyState(3, "a"), actor="t", source="p")  # no history
    AuditLog(path).append(
        "t", "pipeline.run", "flights", "success",
        inputs={"policy_sha256": "a", "policy_version": 3},
    )  # fmt: skip
    assert not record_change(path, PolicyState(3, "a"), actor="t", source="p")
    assert record_change(path, PolicyState(3, "b"), actor="t", source="p")
    assert not record_change(path, PolicyState(4, "c"), actor="t", source="p")
    assert path.read_text().count('"policy.change"') == 2
