"""Redis Streams payload-log sink: one ``XADD`` per entry, a batch per pipelined transaction.

Each stream entry has one field, ``entry``, holding the entry's JSON; its stream id
(``<ms>-<n>``, assigned by Redis) is the entry's offset. A batch is sent as one
``MULTI``/``EXEC`` pipeline, so Redis stores all of it or none of it; if the connection
breaks after ``EXEC`` was sent but before its answer, the writer retries and the batch
may be stored twice (at least once: readers dedupe on ``(writer, seq)``).

Reading uses ``XRANGE`` from an offset. Consumer groups (``XREADGROUP``, pending-entry
acknowledgement) are left to the monitoring consumer that will need them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import redis

from vigie.errors import ErrorCode, VigieError
from vigie.events.payload_entry import PayloadEntry, encode_entry

#: The stream the serving workers write to.
DEFAULT_STREAM = "vigie:payload"

#: Seconds to wait for a connection, then for an answer: a stalled Redis only holds the
#: writer thread this long per try, never a request.
CONNECT_TIMEOUT_S = 2.0
SOCKET_TIMEOUT_S = 5.0

_FIELD = b"entry"
_STREAM_ID = re.compile(r"^\d+-\d+$")
_log = logging.getLogger(__name__)


def connect(url: str) -> redis.Redis:
    """A client for ``url`` with vigie's timeouts (connects lazily, on first command)."""
    return redis.Redis.from_url(
        url, socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=SOCKET_TIMEOUT_S
    )


class RedisStreamSink:
    """Appends batches of entries to a Redis stream.

    Args:
        url: ``redis://`` or ``rediss://`` URL.
        stream: The stream key.
    """

    def __init__(self, url: str, *, stream: str = DEFAULT_STREAM) -> None:
        self.stream = stream
        self._client = connect(url)

    def write(self, entries: Sequence[Mapping[str, Any]]) -> None:
        """XADD every entry, in order, in one transaction.

        Raises:
            redis.RedisError: When Redis is unreachable or refuses.
        """
        with self._client.pipeline(transaction=True) as pipe:
            for entry in entries:
                pipe.xadd(self.stream, {_FIELD: encode_entry(entry)})
            pipe.execute()

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()


def read_stream(
    url: str,
    *,
    stream: str,
    after: str | None,
    limit: int,
    on_skip: Callable[[str, str], object] | None = None,
) -> list[PayloadEntry]:
    """Up to ``limit`` entries after stream id ``after`` (from the start when None).

    A stream entry that does not decode is skipped with a warning and reported to
    ``on_skip`` with its id (so it counts toward ``limit`` but is not returned).

    Raises:
        VigieError: INVALID_INPUT for a malformed ``after``; UNAVAILABLE when Redis
            cannot be reached.
    """
    if after is not None and not _STREAM_ID.match(after):
        raise VigieError(
            ErrorCode.INVALID_INPUT,
            f"payload offset {after!r} is not a Redis stream id <ms>-<n>",
            field="after",
        )
    client = connect(url)
    try:
        rows = client.xrange(stream, min=f"({after}" if after else "-", count=limit)
    except redis.RedisError as err:
        raise VigieError(
            ErrorCode.UNAVAILABLE, f"cannot read the payload stream {stream!r}: {err}"
        ) from err
    finally:
        client.close()
    entries = []
    for stream_id, fields in rows or []:
        offset = stream_id.decode() if isinstance(stream_id, bytes) else str(stream_id)
        try:
            entries.append(PayloadEntry.from_json(offset, (fields or {})[_FIELD]))
        except (KeyError, ValueError) as err:
            reason = f"no {_FIELD.decode()!r} field" if isinstance(err, KeyError) else str(err)
            _log.warning("skipping an unreadable entry %s of %s: %s", offset, stream, reason)
            if on_skip is not None:
                on_skip(offset, reason)
    return entries
