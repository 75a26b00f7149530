"""Typed event streams: one protocol, two transports, chosen by ``VIGIE_STREAM_URL``.

* Unset: local append-only segments under ``VIGIE_HOME/events/<name>/``
  (:mod:`vigie.events.local_stream`; one consumer per group at a time).
* ``redis://``, ``rediss://`` or ``unix://``: the Redis stream ``vigie:events:<name>`` with
  consumer groups (:mod:`vigie.events.redis_stream`).

Delivery is at least once: a delivery stays pending until its consumer acks it after its
own commit, and one never acked (a consumer that died) comes back to the group. Events
carry deterministic ids, so :class:`vigie.events.consume.IdempotentConsumer` drops the
copies. Events come back in publish order; the consumer never reorders them (their
world time is ``occurred_at``).

Poison entries (ones that do not decode) never reach a handler: the consumer that meets
one writes it to the stream's quarantine with its raw bytes, transport id and reason, and
acks it. :func:`read_quarantine` reads them back.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from vigie.config import Settings
from vigie.errors import ErrorCode, VigieError
from vigie.events.flight_events import Event

#: The stream flight and weather events go to unless told otherwise.
DEFAULT_STREAM_NAME = "flights"

#: URL schemes that select the Redis transport.
REDIS_SCHEMES = frozenset({"redis", "rediss", "unix"})

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass(frozen=True)
class Delivery:
    """One event as a consumer received it.

    Attributes:
        id: The transport's id: the Redis stream entry id, or the segment offset.
        event: The decoded event.
    """

    id: str
    event: Event


@dataclass(frozen=True)
class QuarantinedEntry:
    """A stream entry that did not decode, kept with why.

    Attributes:
        id: The entry's transport id in the stream (Redis id or segment offset).
        reason: Why it was refused (:class:`vigie.events.flight_events.PoisonEvent`).
        raw: The entry's bytes as stored (empty when the transport had none).
        group: The consumer group that met it.
        consumer: The consumer that met it.
        quarantined_at: When it was quarantined (UTC, ISO-8601).
    """

    id: str
    reason: str
    raw: bytes
    group: str
    consumer: str
    quarantined_at: str


class EventConsumer(Protocol):
    """One member of a consumer group of a stream.

    Attributes:
        stream: The stream's name.
        group: The consumer group.
        name: This consumer's name within the group.
        quarantined: Poison entries this consumer quarantined since it was opened.
    """

    stream: str
    group: str
    name: str
    quarantined: int

    def poll(self, max_events: int, block_ms: int = 0) -> list[Delivery]:
        """Up to ``max_events`` deliveries, in publish order: new entries, plus entries of
        this group another consumer took and did not ack within the claim timeout.
        Waits up to ``block_ms`` when there is none (0: do not wait). Poison entries are
        quarantined and acked, never returned.

        Raises:
            VigieError: UNAVAILABLE when the transport cannot be reached.
        """
        ...

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Commit: the deliveries are never given to the group again.

        Raises:
            VigieError: UNAVAILABLE when the transport cannot be reached.
        """
        ...

    def lag(self) -> int:
        """Entries not yet delivered to the group plus the group's pending (unacked) ones."""
        ...

    def close(self) -> None:
        """Release the connection or files; unacked deliveries stay pending."""
        ...


class EventStream(Protocol):
    """A named stream of flight and weather events.

    Attributes:
        name: The stream's name (``flights``...).
    """

    name: str

    def publish(self, events: Sequence[Event]) -> None:
        """Append the events, in order, as one batch (all or nothing).

        Raises:
            VigieError: UNAVAILABLE when the transport cannot be reached or refuses.
        """
        ...

    def consumer(self, group: str, name: str) -> EventConsumer:
        """A consumer ``name`` of the group ``group`` (the group is created if new, and
        then starts at the stream's first entry)."""
        ...

    def read_quarantine(self, *, limit: int = 1000) -> list[QuarantinedEntry]:
        """Up to ``limit`` quarantined entries, oldest first."""
        ...

    def close(self) -> None:
        """Release the connection or files."""
        ...


def check_name(value: str, what: str) -> str:
    """``value`` when it is a safe stream, group or consumer name (it becomes a file name).

    Raises:
        VigieError: INVALID_INPUT naming ``what`` otherwise.
    """
    if not _NAME.match(value):
        raise VigieError(
            ErrorCode.INVALID_INPUT,
            f"{what} name {value!r} must be 1-100 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit",
            field=what,
        )
    return value


def events_folder(settings: Settings, name: str) -> Path:
    """The local folder of the stream ``name``: ``VIGIE_HOME/events/<name>``."""
    return settings.home / "events" / check_name(name, "stream")


def open_event_stream(
    settings: Settings, name: str = DEFAULT_STREAM_NAME, **options: Any
) -> EventStream:
    """The stream ``name`` on the transport ``VIGIE_STREAM_URL`` chooses.

    Args:
        settings: ``stream_url`` (Redis when set) and ``home`` (local segments).
        name: The stream's name.
        **options: Passed to the transport's constructor (``maxlen``, ``claim_min_idle_ms``
            for Redis; ``segment_bytes`` locally).

    Raises:
        VigieError: CONFIGURATION for an unsupported URL scheme; INVALID_INPUT for a bad
            name.
    """
    # Imported here, not at the top: the transports import Delivery from this module.
    from vigie.events.local_stream import LocalEventStream  # noqa: PLC0415 (import cycle)
    from vigie.events.redis_stream import RedisEventStream  # noqa: PLC0415 (import cycle)

    url = settings.stream_url
    if url is None:
        return LocalEventStream(events_folder(settings, name), name=name, **options)
    if urlparse(url).scheme in REDIS_SCHEMES:
        return RedisEventStream(url, name=check_name(name, "stream"), **options)
    raise VigieError(
        ErrorCode.CONFIGURATION,
        f"VIGIE_STREAM_URL {url!r} is not supported: use redis://... or leave it unset "
        "for local segment files",
        field="stream_url",
    )


def read_quarantine(
    settings: Settings, name: str = DEFAULT_STREAM_NAME, *, limit: int = 1000
) -> list[QuarantinedEntry]:
    """Up to ``limit`` quarantined entries of the stream ``name``, oldest first.

    Raises:
        VigieError: As :func:`open_event_stream`; UNAVAILABLE when Redis is unreachable.
    """
    stream = open_event_stream(settings, name)
    try:
        return stream.read_quarantine(limit=limit)
    finally:
        stream.close()


def utc_now() -> str:
    """The current instant, UTC ISO-8601 (for quarantine records)."""
    return datetime.now(UTC).isoformat()
