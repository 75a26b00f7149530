"""The outcome log: delayed labels, one event per flight that arrived, append-only.

Beside the payload log and stored the same way (the same sinks and readers, another
place): local segments under ``VIGIE_HOME/outcomes/`` when ``VIGIE_STREAM_URL`` is unset,
the Redis stream ``vigie:outcomes`` when it is ``redis://...``. An event is::

    {"event_id": "...", "flight_key": 123, "observed_at": "2013-01-01T10:30:00+00:00",
     "arr_delay_min": 20, "is_delayed_15": true, "source": "replay",
     "seq": 0, "writer": "<host>-<pid>-<random>", "logged_at": "..."}

``seq``, ``writer`` and ``logged_at`` are the log's own envelope, as in the payload log.
Writes are synchronous and batched by the caller (:meth:`OutcomeLog.emit` then
:meth:`OutcomeLog.flush`); a batch that fails stays pending and is retried by the next
flush, so nothing emitted is lost while the process lives.
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import socket
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from vigie.config import Settings
from vigie.errors import ErrorCode, VigieError
from vigie.events.payload_entry import PayloadSink
from vigie.events.payload_log import open_sink, read_entries
from vigie.events.segments import OnSkip

#: The Redis stream of outcome events.
OUTCOME_STREAM = "vigie:outcomes"

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutcomeEvent:
    """The true outcome of one flight, known once it arrived.

    Attributes:
        event_id: Unique id of this event (two events of one flight have two ids).
        flight_key: The flight (``fact_flight.flight_key``).
        observed_at: When the label became known: the actual arrival (UTC).
        arr_delay_min: Arrival delay, minutes (negative: early).
        is_delayed_15: Arrived more than 15 minutes late.
        source: Who observed it (``replay``, an airline feed...).
        offset: Where it is in the outcome log (set when read back, else empty).
    """

    event_id: str
    flight_key: int
    observed_at: datetime
    arr_delay_min: int
    is_delayed_15: bool
    source: str
    offset: str = ""

    def to_json(self) -> dict[str, Any]:
        """The event's fields as stored (without the envelope)."""
        return {
            "event_id": self.event_id,
            "flight_key": self.flight_key,
            "observed_at": self.observed_at.astimezone(UTC).isoformat(),
            "arr_delay_min": self.arr_delay_min,
            "is_delayed_15": self.is_delayed_15,
            "source": self.source,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], offset: str = "") -> OutcomeEvent:
        """Decode a stored event.

        Raises:
            ValueError: Naming the first field that is missing or of the wrong type.
        """
        return cls(
            _text(data, "event_id"),
            _integer(data, "flight_key"),
            _instant(data, "observed_at"),
            _integer(data, "arr_delay_min"),
            _flag(data, "is_delayed_15"),
            _text(data, "source"),
            offset,
        )


def new_event_id() -> str:
    """A fresh event id (random: two observations of one flight are two events)."""
    return uuid.uuid4().hex


def _field(data: Mapping[str, Any], name: str) -> Any:
    value = data.get(name)
    if value is None:
        raise ValueError(f"field {name!r} is missing")
    return value


def _text(data: Mapping[str, Any], name: str) -> str:
    value = _field(data, name)
    if not isinstance(value, str) or not value:
        raise ValueError(f"field {name!r} must be a non-empty string")
    return value


def _integer(data: Mapping[str, Any], name: str) -> int:
    value = _field(data, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"field {name!r} must be an integer, got {type(value).__name__}")
    return value


def _flag(data: Mapping[str, Any], name: str) -> bool:
    value = _field(data, name)
    if not isinstance(value, bool):
        raise ValueError(f"field {name!r} must be true or false")
    return value


def _instant(data: Mapping[str, Any], name: str) -> datetime:
    value = _text(data, name)
    try:
        instant = datetime.fromisoformat(value)
    except ValueError as err:
        raise ValueError(f"field {name!r} is not an ISO-8601 time: {value!r}") from err
    if instant.tzinfo is None:
        raise ValueError(f"field {name!r} has no time zone: {value!r}")
    return instant.astimezone(UTC)


class OutcomeLog:
    """Writes outcome events to the sink ``VIGIE_STREAM_URL`` chooses.

    Args:
        settings: ``stream_url`` and ``outcomes_dir``.
        sink: Where to write instead (tests, tools).
        stream: The Redis stream key when ``stream_url`` is a Redis URL.

    Raises:
        VigieError: CONFIGURATION for an unsupported ``stream_url``.
    """

    def __init__(
        self, settings: Settings, *, sink: PayloadSink | None = None, stream: str = OUTCOME_STREAM
    ) -> None:
        self._sink = sink or open_sink(settings, stream=stream, folder=settings.outcomes_dir)
        self._writer = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._seq = itertools.count()
        self._pending: list[dict[str, Any]] = []
        self.written = 0
        self.failures = 0

    @property
    def pending(self) -> int:
        """Events emitted but not written yet."""
        return len(self._pending)

    def emit(self, events: Sequence[OutcomeEvent]) -> None:
        """Stamp the events with the log's envelope and queue them for the next flush."""
        logged_at = datetime.now(UTC).isoformat(timespec="microseconds")
        for event in events:
            record = event.to_json()
            record.update(seq=next(self._seq), writer=self._writer, logged_at=logged_at)
            self._pending.append(record)

    def flush(self) -> bool:
        """Write every pending event as one batch; True when nothing is left pending.

        A failed write is logged and counted; its events stay pending for the next flush.
        """
        if not self._pending:
            return True
        try:
            self._sink.write(self._pending)
        except Exception as err:  # any sink failure: keep the events, the next flush retries
            self.failures += 1
            _log.warning("outcome log write failed; %d events kept: %s", self.pending, err)
            return False
        self.written += len(self._pending)
        self._pending = []
        return True

    def close(self) -> None:
        """Flush, then release the sink."""
        self.flush()
        try:
            self._sink.close()
        except Exception as err:  # closing must not fail a shutdown
            _log.warning("outcome sink did not close cleanly: %s", err)


def read_outcomes(
    settings: Settings,
    *,
    after: str | None = None,
    limit: int,
    stream: str = OUTCOME_STREAM,
    on_skip: OnSkip | None = None,
) -> list[OutcomeEvent]:
    """Read outcome events back in order, from the start or after an offset.

    Args:
        settings: ``stream_url`` (Redis) or ``outcomes_dir`` (segments).
        after: The offset of the last event (or skipped line) already read.
        limit: Most log entries read (at least 1); invalid ones count but are not returned.
        stream: The Redis stream key.
        on_skip: Called with the offset and the reason of every line or event passed
            over (unreadable, truncated, missing or malformed fields).

    Returns:
        The valid events read, each with its ``offset``.

    Raises:
        VigieError: INVALID_INPUT for a bad ``limit`` or ``after``; UNAVAILABLE when
            Redis cannot be reached; CONFIGURATION for an unsupported URL.
    """
    if limit < 1:
        raise VigieError(ErrorCode.INVALID_INPUT, "limit must be at least 1", field="limit")
    entries = read_entries(
        settings,
        after=after,
        limit=limit,
        stream=stream,
        folder=settings.outcomes_dir,
        on_skip=on_skip,
    )
    events = []
    for entry in entries:
        try:
            events.append(OutcomeEvent.from_json(entry.data, entry.offset))
        except ValueError as err:
            _log.warning("skipping an invalid outcome event at %s: %s", entry.offset, err)
            if on_skip is not None:
                on_skip(entry.offset, f"invalid outcome event: {err}")
    return events
