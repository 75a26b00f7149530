"""Retention and erasure in local log segments: whole segments go, offsets stay valid."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from vigie.config import Settings
from vigie.events.segments import SegmentSink, read_segments, segment_numbers
from vigie.governance.erasure import ErasureReport, Target, parse_subject
from vigie.governance.policy import DataPolicy, load_policy
from vigie.governance.pseudonymize import Pseudonymizer
from vigie.governance.retention import RetentionReport
from vigie.retention.logs import erase_logs, retain_logs

AS_OF = date(2026, 12, 7)
OLD = datetime(2025, 1, 1, tzinfo=UTC)  # past P1Y on AS_OF
NEW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def policy() -> DataPolicy:
    return load_policy()


@pytest.fixture
def settings(tmp_path: Path, make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(tmp_path / "home", None)


def entry(seq: int, at: datetime, caller: str = "p_someone") -> dict[str, Any]:
    return {"request_id": f"r{seq}", "caller": caller, "seq": seq, "writer": "w",
            "logged_at": at.isoformat()}  # fmt: skip


def write(settings: Settings, *batches: list[dict[str, Any]]) -> SegmentSink:
    """Each batch in a segment of its own."""
    sink = SegmentSink(settings.payload_dir, max_bytes=1)
    for batch in batches:
        sink.write(batch)
    return sink


def retain(settings: Settings, policy: DataPolicy, *, dry_run: bool = False) -> dict[str, Any]:
    report = RetentionReport(AS_OF, dry_run)
    retain_logs(settings, policy, report)
    payload: dict[str, Any] = report.to_json()["stores"]["payload_log"]
    return payload


def offsets(settings: Settings) -> list[str]:
    return [e.offset for e in read_segments(settings.payload_dir, after=None, limit=100)]


def test_a_segment_goes_once_all_its_entries_expired(
    settings: Settings, policy: DataPolicy
) -> None:
    write(settings, [entry(0, OLD), entry(1, OLD)], [entry(2, OLD), entry(3, NEW)], [entry(4, NEW)])
    kept_offsets = offsets(settings)[2:]

    dry = retain(settings, policy, dry_run=True)
    assert segment_numbers(settings.payload_dir) == [1, 2, 3]
    done = retain(settings, policy)

    assert dry["deleted"] == done["deleted"] == 2
    assert done["periods"][0]["by_month"] == {"2025-01": 2}
    assert segment_numbers(settings.payload_dir) == [2, 3]
    # the expired entry of segment 2 waits for its newer neighbour, and is said to
    assert done["periods"][0]["kept"] == [
        {
            "what": "segment-000002.jsonl",
            "entries": 1,
            "why": "the segment holds newer entries; it goes when they expire",
        }
    ]
    assert offsets(settings) == kept_offsets  # readers' positions still point where they did
    assert retain(settings, policy)["deleted"] == 0


def test_the_newest_segment_is_rolled_before_it_goes(
    settings: Settings, policy: DataPolicy
) -> None:
    sink = write(settings, [entry(0, OLD)], [entry(1, OLD)])

    assert retain(settings, policy)["deleted"] == 2
    assert segment_numbers(settings.payload_dir) == [3]  # empty: writers append there

    sink.write([entry(2, NEW)])  # a writer that had segment 2 open moves on
    assert [
        (e.seq, e.offset) for e in read_segments(settings.payload_dir, after=None, limit=9)
    ] == [(2, "000003:000000000000")]
    assert retain(settings, policy)["deleted"] == 0


def test_erasure_rewrites_entries_in_place(settings: Settings, policy: DataPolicy) -> None:
    target = Target.of(parse_subject("client:acme"), Pseudonymizer.from_settings(settings))
    write(
        settings,
        [entry(0, OLD, target.pseudonym), entry(1, OLD)],
        [entry(2, NEW, target.pseudonym)],
    )
    before = read_segments(settings.payload_dir, after=None, limit=9)

    dry = ErasureReport(target, dry_run=True)
    erase_logs(settings, target, dry)
    assert [e.data["caller"] for e in read_segments(settings.payload_dir, after=None, limit=9)] == [
        target.pseudonym, "p_someone", target.pseudonym
    ]  # fmt: skip
    report = ErasureReport(target, dry_run=False)
    erase_logs(settings, target, report)

    after = read_segments(settings.payload_dir, after=None, limit=9)
    assert dry.stores["payload_log"]["redacted"] == report.stores["payload_log"]["redacted"] == 2
    assert [e.offset for e in after] == [e.offset for e in before]
    assert [e.data["caller"] for e in after] == [None, "p_someone", None]
    assert [e.seq for e in after] == [0, 1, 2]
    again = ErasureReport(target, dry_run=False)
    erase_logs(settings, target, again)
    assert again.total == 0
