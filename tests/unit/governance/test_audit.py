"""The hash-chained audit log: appending, and catching every kind of tampering."""

from __future__ import annotations

import json
import multiprocessing
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from vigie.errors import ErrorCode, VigieError
from vigie.governance.audit import GENESIS_HASH, AuditEntry, AuditLog, verify

ENTRIES = 6


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    path = tmp_path / "audit" / "audit.jsonl"
    log = AuditLog(path)
    for i in range(ENTRIES):
        log.append(
            "alice",
            "pipeline.run",
            f"flights/{i}",
            "success",
            inputs={"policy": "ab" * 32, "rows": i},
            details={"note": f"run {i}"},
        )
    return path


def read_lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(lines))


def test_fresh_log_verifies_and_chains(log_path: Path) -> None:
    result = verify(log_path)
    assert result.ok, result.problem
    assert result.entries == ENTRIES
    assert result.problem is None
    entries = [AuditEntry.model_validate_json(line) for line in read_lines(log_path)]
    assert [e.seq for e in entries] == list(range(ENTRIES))
    assert entries[0].prev_hash == GENESIS_HASH
    for before, after in zip(entries, entries[1:], strict=False):
        assert after.prev_hash == before.hash
    assert all(e.hash == e.computed_hash() for e in entries)
    assert datetime.fromisoformat(entries[0].ts).utcoffset() == timedelta(0)
    assert entries[2].inputs == {"policy": "ab" * 32, "rows": 2}
    assert AuditLog(log_path).head() == (ENTRIES - 1, entries[-1].hash) == result.head


def test_edited_field_of_a_middle_entry_is_named(log_path: Path) -> None:
    lines = read_lines(log_path)
    entry = json.loads(lines[2])
    entry["actor"] = "mallory"
    lines[2] = json.dumps(entry) + "\n"
    write_lines(log_path, lines)
    result = verify(log_path)
    assert not result.ok
    assert (result.bad_seq, result.bad_line, result.entries) == (2, 3, 2)
    assert result.problem == "entry seq=2 (line 3) was edited: its hash does not match its content"


def test_edit_with_a_recomputed_hash_breaks_the_next_link(log_path: Path) -> None:
    lines = read_lines(log_path)
    entry = AuditEntry.model_validate_json(lines[2]).model_copy(update={"outcome": "failure"})
    forged = entry.model_copy(update={"hash": entry.computed_hash()})
    lines[2] = forged.model_dump_json() + "\n"
    write_lines(log_path, lines)
    result = verify(log_path)
    assert not result.ok
    assert (result.bad_seq, result.bad_line) == (3, 4)
    assert result.problem is not None
    assert "prev_hash" in result.problem


def test_deleted_middle_line_is_named(log_path: Path) -> None:
    lines = read_lines(log_path)
    del lines[3]
    write_lines(log_path, lines)
    result = verify(log_path)
    assert not result.ok
    assert (result.bad_seq, result.bad_line) == (3, 4)
    assert result.problem is not None
    assert "seq=3 is missing" in result.problem
    assert "removed" in result.problem


def test_swapped_lines_are_named(log_path: Path) -> None:
    lines = read_lines(log_path)
    lines[2], lines[3] = lines[3], lines[2]
    write_lines(log_path, lines)
    result = verify(log_path)
    assert not result.ok
    assert (result.bad_seq, result.bad_line) == (2, 3)
    assert result.problem is not None
    assert "out of order" in result.problem
    assert "seq=2 is at line 4" in result.problem


def test_duplicated_line_is_named(log_path: Path) -> None:
    lines = read_lines(log_path)
    lines.insert(3, lines[2])
    write_lines(log_path, lines)
    result = verify(log_path)
    assert (result.ok, result.bad_seq, result.bad_line) == (False, 2, 4)


@pytest.mark.parametrize("garbage", ["{not json\n", "\n", '{"seq": 4}\n'])
def test_garbled_line_is_named(log_path: Path, garbage: str) -> None:
    lines = read_lines(log_path)
    lines[4] = garbage
    write_lines(log_path, lines)
    result = verify(log_path)
    assert not result.ok
    assert result.bad_line == 5
    assert result.entries == 4
    assert result.problem is not None
    assert result.problem.startswith("line 5 (where seq=4 was expected)")


def test_cut_short_last_line_fails_and_blocks_appends(log_path: Path) -> None:
    text = log_path.read_text()
    log_path.write_text(text[:-40])
    result = verify(log_path)
    assert not result.ok
    assert result.bad_line == ENTRIES
    with pytest.raises(VigieError) as caught:
        AuditLog(log_path).append("alice", "pipeline.run", "flights", "success")
    assert caught.value.code is ErrorCode.AUDIT_TAMPERED
    with pytest.raises(VigieError) as raised:
        result.raise_for_problem()
    assert raised.value.code is ErrorCode.AUDIT_TAMPERED


def test_append_refuses_to_chain_to_an_edited_last_entry(log_path: Path) -> None:
    lines = read_lines(log_path)
    lines[-1] = lines[-1].replace('"alice"', '"mallory"')
    write_lines(log_path, lines)
    with pytest.raises(VigieError, match="seq=5 was edited"):
        AuditLog(log_path).append("alice", "pipeline.run", "flights", "success")


def test_tail_truncation_needs_an_anchor(log_path: Path) -> None:
    anchor = AuditLog(log_path).head()
    write_lines(log_path, read_lines(log_path)[:-2])
    assert verify(log_path).ok  # the limit: a shorter chain is still a valid chain
    result = verify(log_path, expected_head=anchor)
    assert not result.ok
    assert result.bad_seq == ENTRIES - 1
    assert result.problem is not None
    assert "removed from the end" in result.problem


def test_anchor_accepts_a_log_that_grew_and_refuses_a_rewritten_one(
    log_path: Path, tmp_path: Path
) -> None:
    anchor = AuditLog(log_path).head()
    AuditLog(log_path).append("bob", "model.promote", "flight_delay/3", "refused")
    assert verify(log_path, expected_head=anchor).ok
    rewritten = tmp_path / "rewritten.jsonl"
    other = AuditLog(rewritten)
    for _ in range(ENTRIES):
        other.append("mallory", "pipeline.run", "flights", "success")
    result = verify(rewritten, expected_head=anchor)
    assert not result.ok
    assert result.problem == "entry seq=5 does not match the anchored head: its hash differs"


def test_missing_log_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(VigieError) as caught:
        verify(tmp_path / "absent.jsonl")
    assert caught.value.code is ErrorCode.NOT_FOUND
    assert AuditLog(tmp_path / "absent.jsonl").head() == (-1, GENESIS_HASH)


def test_empty_log_verifies(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.touch()
    assert verify(path).ok
    assert verify(path).entries == 0


def test_invalid_appends_are_refused_and_write_nothing(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    with pytest.raises(VigieError) as caught:
        log.append("alice", "pipeline.run", "flights", "done")
    assert caught.value.code is ErrorCode.INVALID_INPUT
    with pytest.raises(VigieError, match="JSON"):
        log.append("alice", "pipeline.run", "flights", "success", inputs={"x": object()})
    with pytest.raises(VigieError, match="JSON"):
        log.append("alice", "pipeline.run", "flights", "success", details={"x": float("nan")})
    assert not log.path.exists()


def test_long_entries_chain_across_read_blocks(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    for i in range(3):
        log.append(
            "alice", "report.write", "big", "success", details={"blob": "x" * 200_000, "i": i}
        )
    result = verify(log.path)
    assert (result.ok, result.entries) == (True, 3)


def _append_many(path: str, worker: int, count: int) -> None:
    log = AuditLog(Path(path))
    for i in range(count):
        log.append(f"worker-{worker}", "stream.event", "events", "success", details={"i": i})


def test_concurrent_writers_from_several_processes(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "audit.jsonl"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_many, args=(str(path), w, 25)) for w in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=120)
        assert process.exitcode == 0
    result = verify(path)
    assert result.ok, result.problem
    assert result.entries == 100
    written = {
        (e.actor, e.details["i"])
        for e in (AuditEntry.model_validate_json(line) for line in read_lines(path))
    }
    assert len(written) == 100
