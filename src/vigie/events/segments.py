"""Local payload-log sink: append-only JSON-lines segment files, rotated by size.

Files are ``segment-000001.jsonl``, ``segment-000002.jsonl``... under one folder. A batch
is appended whole to the newest segment (or to a new one when it would pass the size
limit) under an exclusive ``flock`` of the folder's ``.lock`` file, then fsynced: several
processes (serving workers) can share the folder, and batches never interleave. A
written line is never rewritten; a batch whose write fails is cut back off so no half
line stays (readers also skip a last line without its end of line: one being written).

An entry's offset is ``<segment number>:<byte position of its line>``: resuming after it
is one seek, and offsets stay valid because segments are never rewritten.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from vigie.errors import ErrorCode, VigieError
from vigie.events.payload_entry import PayloadEntry, encode_entry

#: Default size after which a new segment is started.
DEFAULT_SEGMENT_BYTES = 64 << 20

#: Called with the offset of a line a reader skipped and why (corrupted, truncated).
OnSkip = Callable[[str, str], object]

_NAME = re.compile(r"^segment-(\d{6,})\.jsonl$")
_OFFSET = re.compile(r"^(\d+):(\d+)$")
_log = logging.getLogger(__name__)

#: What a reader decodes each line into.
T = TypeVar("T")


def segment_path(folder: Path, number: int) -> Path:
    """The file of segment ``number`` (from 1)."""
    return folder / f"segment-{number:06d}.jsonl"


def segment_numbers(folder: Path) -> list[int]:
    """The numbers of the segments in ``folder``, ascending (empty if none or no folder)."""
    if not folder.is_dir():
        return []
    found = (_NAME.match(name) for name in os.listdir(folder))
    return sorted(int(m.group(1)) for m in found if m)


def format_offset(segment: int, position: int) -> str:
    """The offset of the line starting at ``position`` in segment ``segment``."""
    return f"{segment:06d}:{position:012d}"


class SegmentSink:
    """Appends batches of entries to the segments under ``folder``.

    Args:
        folder: The segment folder (created on first write, mode 0750).
        max_bytes: Size from which a batch goes into a new segment.
    """

    def __init__(self, folder: Path, *, max_bytes: int = DEFAULT_SEGMENT_BYTES) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self._current: int | None = None

    def write(self, entries: Sequence[Mapping[str, Any]]) -> None:
        """Append the entries as one batch and fsync it.

        Raises:
            OSError: When the disk refuses; nothing of the batch is left behind then
                (unless cutting it back fails too).
        """
        data = b"".join(encode_entry(e) + b"\n" for e in entries)
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o750)
        with folder_lock(self.folder):
            number = self._newest()
            path = segment_path(self.folder, number)
            size = path.stat().st_size if path.exists() else 0
            if size and size + len(data) > self.max_bytes:
                number, size = number + 1, 0
                path = segment_path(self.folder, number)
            _append(path, data, size)
            self._current = number

    def close(self) -> None:
        """Nothing stays open between batches."""

    def _newest(self) -> int:
        """The newest segment; another process may have started later ones since."""
        if self._current is None:
            self._current = max(segment_numbers(self.folder), default=1)
        while segment_path(self.folder, self._current + 1).exists():
            self._current += 1
        return self._current


def _append(path: Path, data: bytes, size: int) -> None:
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, size)  # cut the partial batch back off; the writer retries it
            raise
    finally:
        os.close(fd)
    if created:
        _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """The lock of a segment folder: every writer holds it for a batch, and so does whatever
    removes or rolls segments under the writers (retention)."""
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def parse_offset(offset: str) -> tuple[int, int]:
    """``(segment, position)`` of a segment offset.

    Raises:
        VigieError: INVALID_INPUT when it is not ``<segment>:<position>``.
    """
    match = _OFFSET.match(offset)
    if not match:
        raise VigieError(
            ErrorCode.INVALID_INPUT,
            f"segment offset {offset!r} is not <segment>:<position>, e.g. 000001:000000000000",
            field="after",
        )
    return int(match.group(1)), int(match.group(2))


def read_segments(
    folder: Path, *, after: str | None, limit: int, on_skip: OnSkip | None = None
) -> list[PayloadEntry]:
    """Up to ``limit`` payload entries after the one at ``after`` (see :func:`read_lines`)."""
    return read_lines(folder, PayloadEntry.from_json, after=after, limit=limit, on_skip=on_skip)


def read_lines(
    folder: Path,
    decode: Callable[[str, bytes], T],
    *,
    after: str | None,
    limit: int,
    on_skip: OnSkip | None = None,
) -> list[T]:
    """Up to ``limit`` records after the one at ``after`` (from the start when None), each
    line given to ``decode`` with its offset (it raises ValueError for a line it refuses).

    Lines that do not decode are skipped with a warning and reported to ``on_skip`` with
    their offset (a valid ``after``: a consumer can resume past them). A last line without
    its end of line is left for a later read when it ends the newest segment (being
    written), skipped and reported when it ends an older one (truncated). A segment
    removed by retention is passed over: reading resumes at the next one.
    """
    start = parse_offset(after) if after is not None else (0, -1)
    entries: list[T] = []
    numbers = segment_numbers(folder)
    for number in numbers:
        if number < start[0]:
            continue
        skip_through = start[1] if number == start[0] else -1
        lines = _read_segment(
            folder,
            decode,
            number,
            skip_through,
            limit - len(entries),
            newest=number == numbers[-1],
            on_skip=on_skip,
        )
        entries.extend(lines)
        if len(entries) >= limit:
            break
    return entries


def _read_segment(
    folder: Path,
    decode: Callable[[str, bytes], T],
    number: int,
    skip_through: int,
    limit: int,
    *,
    newest: bool,
    on_skip: OnSkip | None,
) -> Iterator[T]:
    """Entries of one segment whose line starts after byte ``skip_through``."""
    with segment_path(folder, number).open("rb") as handle:
        if skip_through >= 0:
            handle.seek(skip_through)
            handle.readline()  # the entry the reader already has
        count = 0
        while count < limit:
            position = handle.tell()
            line = handle.readline()
            if not line.endswith(b"\n"):
                if line and not newest:
                    _skip(on_skip, number, position, "truncated line (no end of line)")
                return
            try:
                yield decode(format_offset(number, position), line)
            except ValueError as err:
                _skip(on_skip, number, position, str(err))
                continue
            count += 1


def _skip(on_skip: OnSkip | None, number: int, position: int, reason: str) -> None:
    _log.warning("skipping an unreadable line at %s:%d: %s", number, position, reason)
    if on_skip is not None:
        on_skip(format_offset(number, position), reason)
