"""Local event stream: append-only segment files, one committed offset per consumer group.

Layout under the stream's folder (``VIGIE_HOME/events/<name>/``)::

    segment-000001.jsonl ...   the events, one JSON line each (vigie.events.segments)
    groups/<group>.offset      the group's committed offset (JSON), replaced atomically
    groups/<group>.lock        held (flock) by the group's one open consumer
    quarantine/segment-*.jsonl poison entries with their raw line, offset and reason

A batch is published whole (:class:`~vigie.events.segments.SegmentSink`: flock, one write,
fsync, cut back on failure). Locally a group has **one consumer at a time**: opening a
second one of the same group, in any process, fails with CONFLICT. The consumer reads
after the committed offset and after what it already has in flight; an ack advances the
committed offset to the highest contiguously acked one and writes it (temp file,
``os.replace``, fsync). A consumer that dies loses its in-flight deliveries only in
memory: its successor starts at the committed offset, so they come back (at least once).
A poison line is quarantined before the offset may pass it; if the process dies between
the two it is quarantined twice, never lost.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from vigie.errors import ErrorCode, VigieError
from vigie.events.flight_events import Event, PoisonEvent, decode, to_record
from vigie.events.segments import (
    DEFAULT_SEGMENT_BYTES,
    SegmentSink,
    parse_offset,
    read_lines,
    segment_numbers,
    segment_path,
)
from vigie.events.stream import Delivery, QuarantinedEntry, check_name, utc_now

#: How often a blocking poll looks for new lines.
POLL_INTERVAL_S = 0.02

_COUNT_CHUNK = 1 << 20


@dataclass(frozen=True)
class _Poison:
    offset: str
    raw: bytes
    reason: str


def _decode_line(offset: str, line: bytes) -> Delivery | _Poison:
    try:
        return Delivery(offset, decode(line))
    except PoisonEvent as err:
        return _Poison(offset, line.rstrip(b"\n"), err.reason)


class LocalEventStream:
    """An event stream in the segment folder ``folder``.

    Args:
        folder: The stream's folder (created on first publish or consumer).
        name: The stream's name; default: the folder's name.
        segment_bytes: Size from which a batch goes into a new segment.
    """

    def __init__(
        self, folder: Path, *, name: str | None = None, segment_bytes: int = DEFAULT_SEGMENT_BYTES
    ) -> None:
        self.folder = folder
        self.name = name if name is not None else folder.name
        self._sink = SegmentSink(folder, max_bytes=segment_bytes)

    def publish(self, events: Sequence[Event]) -> None:
        """Append the events as one batch, in order, and fsync it.

        Raises:
            VigieError: UNAVAILABLE when the disk refuses (nothing of the batch is kept).
        """
        if not events:
            return
        records = [to_record(event) for event in events]
        try:
            self._sink.write(records)
        except OSError as err:
            raise VigieError(
                ErrorCode.UNAVAILABLE,
                f"cannot append to the event stream {self.name!r} in {self.folder}: {err}",
                stream=self.name,
            ) from err

    def consumer(self, group: str, name: str) -> LocalEventConsumer:
        """The consumer ``name`` of ``group`` (see :class:`LocalEventConsumer`)."""
        return LocalEventConsumer(self.folder, stream=self.name, group=group, name=name)

    def read_quarantine(self, *, limit: int = 1000) -> list[QuarantinedEntry]:
        """Up to ``limit`` quarantined entries, oldest first."""
        return read_lines(self.folder / "quarantine", _quarantined, after=None, limit=limit)

    def close(self) -> None:
        """Nothing stays open between batches."""
        self._sink.close()


class LocalEventConsumer:
    """The one consumer of a group of a local stream.

    Args:
        folder: The stream's folder.
        stream: The stream's name (for messages and metrics).
        group: The consumer group.
        name: This consumer's name (recorded in the quarantine).

    Raises:
        VigieError: CONFLICT when another consumer of ``group`` is open; INVALID_INPUT for
            a group or consumer name that cannot be a file name.
    """

    def __init__(self, folder: Path, *, stream: str, group: str, name: str) -> None:
        self.folder = folder
        self.stream = stream
        self.group = check_name(group, "group")
        self.name = check_name(name, "consumer")
        self.quarantined = 0
        groups = folder / "groups"
        groups.mkdir(parents=True, exist_ok=True, mode=0o750)
        self._lock = _lock_group(groups / f"{group}.lock", stream, group)
        self._offset_path = groups / f"{group}.offset"
        self._committed = _read_offset(self._offset_path)
        self._cursor = self._committed
        # Offsets delivered and not yet committed, in stream order -> acked yet.
        self._inflight: OrderedDict[str, bool] = OrderedDict()
        self._quarantine = SegmentSink(folder / "quarantine")

    @property
    def committed(self) -> str | None:
        """The group's committed offset (None: nothing committed yet)."""
        return self._committed

    def poll(self, max_events: int, block_ms: int = 0) -> list[Delivery]:
        """Up to ``max_events`` deliveries after the committed offset and the ones in flight,
        waiting up to ``block_ms`` for some. Poison lines are quarantined, never returned."""
        deadline = time.monotonic() + max(block_ms, 0) / 1000
        while True:
            deliveries = self._read(max_events)
            remaining = deadline - time.monotonic()
            if deliveries or remaining <= 0:
                return deliveries
            time.sleep(min(POLL_INTERVAL_S, remaining))

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Mark the deliveries done and commit the highest contiguously acked offset.

        Acking one already committed, or one this consumer never delivered, does nothing.

        Raises:
            VigieError: UNAVAILABLE when the offset file cannot be written.
        """
        for delivery in deliveries:
            if delivery.id in self._inflight:
                self._inflight[delivery.id] = True
        self._advance()

    def lag(self) -> int:
        """Entries after the committed offset: undelivered plus delivered and not acked."""
        return count_after(self.folder, self._committed)

    def close(self) -> None:
        """Release the group: deliveries not acked come back to the group's next consumer."""
        self._inflight.clear()
        self._lock.close()

    def _read(self, max_events: int) -> list[Delivery]:
        """Deliveries after the cursor; reads on past lines that were all poison."""
        while True:
            ordered = self._next_lines(max_events)
            if not ordered:
                return []
            self._cursor = _id(ordered[-1])
            self._quarantine_all([item for item in ordered if isinstance(item, _Poison)])
            for item in ordered:
                self._inflight[_id(item)] = isinstance(item, _Poison)
            self._advance()
            deliveries = [item for item in ordered if isinstance(item, Delivery)]
            if deliveries:
                return deliveries

    def _next_lines(self, max_events: int) -> list[Delivery | _Poison]:
        """The lines after the cursor, decoded or not, in stream order (unreadable ones the
        segment reader skipped included, as poison without bytes)."""
        skipped: list[_Poison] = []
        items = read_lines(
            self.folder,
            _decode_line,
            after=self._cursor,
            limit=max_events,
            on_skip=lambda offset, reason: skipped.append(_Poison(offset, b"", reason)),
        )
        return sorted([*items, *skipped], key=lambda item: parse_offset(_id(item)))

    def _quarantine_all(self, poison: list[_Poison]) -> None:
        if not poison:
            return
        records = [_quarantine_record(p, group=self.group, consumer=self.name) for p in poison]
        try:
            self._quarantine.write(records)
        except OSError as err:
            raise VigieError(
                ErrorCode.UNAVAILABLE, f"cannot write the quarantine of {self.stream!r}: {err}"
            ) from err
        self.quarantined += len(poison)

    def _advance(self) -> None:
        """Commit up to the last acked offset with nothing unacked before it."""
        committed = None
        while self._inflight:
            offset, acked = next(iter(self._inflight.items()))
            if not acked:
                break
            self._inflight.popitem(last=False)
            committed = offset
        if committed is None:
            return
        try:
            _write_offset(self._offset_path, committed)
        except OSError as err:
            raise VigieError(
                ErrorCode.UNAVAILABLE,
                f"cannot commit the offset of group {self.group!r} of {self.stream!r}: {err}",
            ) from err
        self._committed = committed


def _id(item: Delivery | _Poison) -> str:
    return item.id if isinstance(item, Delivery) else item.offset


def _lock_group(path: Path, stream: str, group: str) -> IO[bytes]:
    handle = path.open("a+b")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as err:
        handle.close()
        raise VigieError(
            ErrorCode.CONFLICT,
            f"group {group!r} of the local event stream {stream!r} already has a consumer: "
            "a local stream allows one consumer per group at a time",
            group=group,
        ) from err
    return handle


def _read_offset(path: Path) -> str | None:
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    offset = data.get("offset") if isinstance(data, dict) else None
    if not isinstance(offset, str):
        raise VigieError(ErrorCode.SOURCE_CORRUPT, f"{path} holds no committed offset")
    parse_offset(offset)
    return offset


def _write_offset(path: Path, offset: str) -> None:
    data = json.dumps({"offset": offset, "committed_at": utc_now()}).encode()
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def count_after(folder: Path, offset: str | None) -> int:
    """Complete lines in the segments of ``folder`` after the one at ``offset`` (all of
    them when None); reads the bytes after the offset, not the lines before it."""
    start = parse_offset(offset) if offset is not None else (0, -1)
    total = 0
    for number in segment_numbers(folder):
        if number < start[0]:
            continue
        with segment_path(folder, number).open("rb") as handle:
            if number == start[0] and start[1] >= 0:
                handle.seek(start[1])
                handle.readline()
            while chunk := handle.read(_COUNT_CHUNK):
                total += chunk.count(b"\n")
    return total


def _quarantine_record(poison: _Poison, *, group: str, consumer: str) -> dict[str, Any]:
    record: dict[str, Any] = {"id": poison.offset, "reason": poison.reason}
    try:
        record["raw"] = poison.raw.decode("utf-8")
    except UnicodeDecodeError:
        record["raw_base64"] = base64.b64encode(poison.raw).decode("ascii")
    return record | {"group": group, "consumer": consumer, "quarantined_at": utc_now()}


def _quarantined(offset: str, line: bytes) -> QuarantinedEntry:
    data = json.loads(line)
    if not isinstance(data, dict):
        raise ValueError("a quarantine record must be a JSON object")
    raw = (
        base64.b64decode(data["raw_base64"])
        if "raw_base64" in data
        else str(data.get("raw", "")).encode("utf-8")
    )
    return QuarantinedEntry(
        id=str(data.get("id", "")),
        reason=str(data.get("reason", "")),
        raw=raw,
        group=str(data.get("group", "")),
        consumer=str(data.get("consumer", "")),
        quarantined_at=str(data.get("quarantined_at", "")),
    )
