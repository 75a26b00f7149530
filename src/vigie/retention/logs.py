"""Retention and erasure in the append-only logs: local segment folders and Redis streams.

The payload log, the outcome log and the flight event streams with their quarantines share
two layouts (:mod:`vigie.events.segments`, :mod:`vigie.events.payload_stream`,
:mod:`vigie.events.redis_stream`):

* Local segments. Every reader's offset is a byte position in a segment, so an entry is
  never cut out of one: a segment goes whole once every entry in it has outlived its
  retention, as in log-structured stores; the expired entries of a segment that still
  holds newer ones are reported as kept and go with it later. The newest segment, where
  writers append, is rolled first: an empty successor is created under the writers' lock,
  so they move on to it. Erasure rewrites the subject's values in place, each line keeping
  its length (:func:`vigie.governance.erasure.redact_line`).
* Redis streams. Entries are deleted one by one (``XDEL``). An entry cannot be edited, so
  erasure deletes the entries that hold the subject.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import redis

from vigie.config import Settings
from vigie.errors import ErrorCode, VigieError
from vigie.events.outcomes import OUTCOME_STREAM
from vigie.events.payload_stream import DEFAULT_STREAM, connect
from vigie.events.redis_stream import stream_key
from vigie.events.segments import folder_lock, segment_numbers, segment_path
from vigie.events.stream import DEFAULT_STREAM_NAME, REDIS_SCHEMES, events_folder
from vigie.governance.erasure import ErasureReport, Target, redact_line
from vigie.governance.policy import DataPolicy
from vigie.governance.retention import RetentionReport, Sweep, parse_instant

#: Redis keys of the event streams and their quarantines (:mod:`vigie.events.redis_stream`).
EVENT_STREAMS = "vigie:events:*"

_PAGE = 500


@dataclass(frozen=True)
class Log:
    """One log to sweep: where it is and what dates its entries.

    Attributes:
        store: Its store in the policy's ``stores`` section.
        where: How the report names it (``segments:payload``, ``redis:vigie:payload``).
        ages: Entry fields holding its event time, the first present one counting.
        folder: Its segment folder (local logs).
        stream: Its Redis stream key (Redis logs).
    """

    store: str
    where: str
    ages: tuple[str, ...]
    folder: Path | None = None
    stream: str | None = None


def redis_url(settings: Settings) -> str | None:
    """The Redis URL of the logs, or None when they are local segments.

    Raises:
        VigieError: CONFIGURATION for an unsupported ``VIGIE_STREAM_URL``.
    """
    url = settings.stream_url
    if url is None:
        return None
    if urlparse(url).scheme not in REDIS_SCHEMES:
        raise VigieError(
            ErrorCode.CONFIGURATION,
            f"VIGIE_STREAM_URL {url!r} is not supported: use redis://... or leave it unset",
            field="stream_url",
        )
    return url


def logs(settings: Settings, client: redis.Redis | None) -> list[Log]:
    """Every log of the installation: payload, outcomes, each event stream and quarantine."""
    if client is None:
        found = [
            Log("payload_log", "segments:payload", ("logged_at",), folder=settings.payload_dir),
            Log("outcome_log", "segments:outcomes", ("observed_at",), folder=settings.outcomes_dir),
        ]
        events = settings.home / "events"
        names = {f.name for f in events.iterdir() if f.is_dir()} if events.is_dir() else set()
        for name in sorted(names | {DEFAULT_STREAM_NAME}):  # the default one, even if empty
            folder = events_folder(settings, name)
            where = f"segments:events/{name}"
            found.append(Log("flight_events", where, ("occurred_at",), folder=folder))
            found.append(
                Log(
                    "flight_events",
                    f"{where}/quarantine",
                    ("quarantined_at",),
                    folder=folder / "quarantine",
                )
            )
        return found
    found = [
        Log("payload_log", f"redis:{DEFAULT_STREAM}", ("logged_at",), stream=DEFAULT_STREAM),
        Log("outcome_log", f"redis:{OUTCOME_STREAM}", ("observed_at",), stream=OUTCOME_STREAM),
    ]
    default = stream_key(DEFAULT_STREAM_NAME)
    keys = {_text(k) for k in client.scan_iter(match=EVENT_STREAMS, _type="STREAM")}
    for key in sorted(keys | {default, f"{default}:quarantine"}):
        ages = ("quarantined_at",) if key.endswith(":quarantine") else ("occurred_at",)
        found.append(Log("flight_events", f"redis:{key}", ages, stream=key))
    return found


def retain_logs(settings: Settings, policy: DataPolicy, report: RetentionReport) -> None:
    """Sweep every log for entries past the retention of its store."""
    with _client(settings) as client:
        for log in logs(settings, client):
            sweep = report.start(policy, log.store, "entry", where=log.where)
            if log.folder is not None:
                _retain_segments(log, sweep, report.dry_run)
            elif client is not None and log.stream is not None:
                _retain_stream(client, log, sweep, report.dry_run)


def erase_logs(settings: Settings, target: Target, report: ErasureReport) -> None:
    """Take the subject out of every log (redacted in segments, deleted from streams)."""
    values = target.values()
    with _client(settings) as client:
        for log in logs(settings, client):
            if log.folder is not None:
                report.add(log.store, "redacted", _erase_segments(log.folder, values, report))
            elif client is not None and log.stream is not None:
                report.add(log.store, "deleted", _erase_stream(client, log.stream, values, report))


@contextmanager
def _client(settings: Settings) -> Iterator[redis.Redis | None]:
    url = redis_url(settings)
    if url is None:
        yield None
        return
    client = connect(url)
    try:
        yield client
    except redis.RedisError as err:
        raise VigieError(ErrorCode.UNAVAILABLE, f"cannot sweep the Redis logs: {err}") from err
    finally:
        client.close()


# -- local segments -------------------------------------------------------------------------


@contextmanager
def _writers_locked(folder: Path, dry_run: bool) -> Iterator[None]:
    """Hold the lock every segment writer takes for a batch (:class:`SegmentSink`)."""
    if dry_run or not folder.is_dir():
        yield
        return
    with folder_lock(folder):
        yield


def _retain_segments(log: Log, sweep: Sweep, dry_run: bool) -> None:
    assert log.folder is not None
    with _writers_locked(log.folder, dry_run):
        numbers = segment_numbers(log.folder)
        for number in numbers:
            times = _segment_times(segment_path(log.folder, number), log.ages)
            expired = [t for t in times if t < sweep.cutoff]
            if not expired:
                continue
            if len(expired) < len(times):
                sweep.kept.append(
                    {
                        "what": segment_path(log.folder, number).name,
                        "entries": len(expired),
                        "why": "the segment holds newer entries; it goes when they expire",
                    }
                )
                continue
            if not dry_run:
                if number == numbers[-1]:
                    _roll(log.folder, number)
                segment_path(log.folder, number).unlink()
            for instant in expired:
                sweep.count(instant)


def _segment_times(path: Path, ages: tuple[str, ...]) -> list[datetime]:
    """The event time of every entry of a segment that has one (unreadable lines left out)."""
    times = []
    with path.open("rb") as handle:
        for line in handle:
            try:
                data = json.loads(line)
            except ValueError:
                continue
            instant = _age(data, ages) if isinstance(data, dict) else None
            if instant is not None:
                times.append(instant)
    return times


def _age(data: dict[str, Any], ages: tuple[str, ...]) -> datetime | None:
    for name in ages:
        instant = parse_instant(data.get(name))
        if instant is not None:
            return instant
    return None


def _roll(folder: Path, newest: int) -> None:
    """Start an empty successor of the newest segment, so writers append there from now."""
    fd = os.open(segment_path(folder, newest + 1), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    os.close(fd)
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _erase_segments(folder: Path, values: tuple[str, ...], report: ErasureReport) -> int:
    redacted = 0
    with _writers_locked(folder, report.dry_run):
        for number in segment_numbers(folder):
            path = segment_path(folder, number)
            edits = _edits(path, values)
            redacted += len(edits)
            if edits and not report.dry_run:
                _write_in_place(path, edits)
    return redacted


def _edits(path: Path, values: tuple[str, ...]) -> list[tuple[int, bytes]]:
    """(byte position, redacted line) of every line of the segment that holds the subject."""
    edits, position = [], 0
    with path.open("rb") as handle:
        for line in handle:
            redacted = redact_line(line, values)
            if redacted is not None and redacted != line:
                edits.append((position, redacted))
            position += len(line)
    return edits


def _write_in_place(path: Path, edits: list[tuple[int, bytes]]) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        for position, line in edits:
            os.pwrite(fd, line, position)
        os.fsync(fd)
    finally:
        os.close(fd)


# -- Redis streams --------------------------------------------------------------------------


def _entries(client: redis.Redis, key: str) -> Iterator[tuple[str, dict[str, str]]]:
    """Every entry of a stream, oldest first, as (id, fields as text)."""
    start = "-"
    while True:
        rows = client.xrange(key, min=start, count=_PAGE)
        for entry_id, fields in rows or []:
            yield _text(entry_id), {_text(k): _text(v) for k, v in (fields or {}).items()}
        if not rows or len(rows) < _PAGE:
            return
        start = f"({_text(rows[-1][0])}"


def _stream_age(fields: dict[str, str], ages: tuple[str, ...]) -> datetime | None:
    """The event time of a stream entry: a field of its own, or one of its JSON document."""
    instant = _age(dict(fields), ages)
    if instant is not None:
        return instant
    for value in fields.values():
        try:
            data = json.loads(value)
        except ValueError:
            continue
        if isinstance(data, dict) and (instant := _age(data, ages)) is not None:
            return instant
    return None


def _retain_stream(client: redis.Redis, log: Log, sweep: Sweep, dry_run: bool) -> None:
    assert log.stream is not None
    doomed = []
    for entry_id, fields in _entries(client, log.stream):
        instant = _stream_age(fields, log.ages)
        if instant is not None and instant < sweep.cutoff:
            doomed.append(entry_id)
            sweep.count(instant)
    if not dry_run:
        _delete(client, log.stream, doomed)


def _erase_stream(
    client: redis.Redis, key: str, values: tuple[str, ...], report: ErasureReport
) -> int:
    doomed = [
        entry_id
        for entry_id, fields in _entries(client, key)
        if any(value in text for text in fields.values() for value in values)
    ]
    if not report.dry_run:
        _delete(client, key, doomed)
    return len(doomed)


def _delete(client: redis.Redis, key: str, ids: list[str]) -> None:
    for start in range(0, len(ids), _PAGE):
        client.xdel(key, *ids[start : start + _PAGE])


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


__all__ = ["Log", "erase_logs", "logs", "redis_url", "retain_logs"]
