"""Segment files: what a reader does with torn and foreign lines, and missing segments."""

from __future__ import annotations

from pathlib import Path

from vigie.events.segments import SegmentSink, read_segments, segment_path


def entry(i: int) -> dict[str, object]:
    return {"seq": i, "writer": "w", "logged_at": "2024-01-01T00:00:00+00:00", "i": i}


def test_a_line_being_written_is_left_for_later(tmp_path: Path) -> None:
    sink = SegmentSink(tmp_path)
    sink.write([entry(0), entry(1)])
    with segment_path(tmp_path, 1).open("ab") as handle:
        handle.write(b'{"seq": 2, "wri')
    assert [e.seq for e in read_segments(tmp_path, after=None, limit=10)] == [0, 1]


def test_unreadable_lines_are_skipped(tmp_path: Path) -> None:
    sink = SegmentSink(tmp_path)
    sink.write([entry(0)])
    with segment_path(tmp_path, 1).open("ab") as handle:
        handle.write(b"garbage\n[1]\n")
    sink.write([entry(1)])
    assert [e.seq for e in read_segments(tmp_path, after=None, limit=10)] == [0, 1]


def test_reading_resumes_at_the_next_segment_when_one_was_removed(tmp_path: Path) -> None:
    sink = SegmentSink(tmp_path, max_bytes=1)
    for i in range(3):
        sink.write([entry(i)])
    first = read_segments(tmp_path, after=None, limit=1)[0]
    segment_path(tmp_path, 2).unlink()
    assert [e.seq for e in read_segments(tmp_path, after=first.offset, limit=10)] == [2]


def test_two_writers_on_one_folder_share_the_segments(tmp_path: Path) -> None:
    one, two = SegmentSink(tmp_path, max_bytes=200), SegmentSink(tmp_path, max_bytes=200)
    for i in range(0, 20, 2):
        one.write([entry(i)])
        two.write([entry(i + 1)])
    assert [e.seq for e in read_segments(tmp_path, after=None, limit=50)] == list(range(20))


def test_empty_or_missing_folder_reads_nothing(tmp_path: Path) -> None:
    assert read_segments(tmp_path / "absent", after=None, limit=5) == []
