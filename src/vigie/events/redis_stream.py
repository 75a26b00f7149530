"""Redis Streams event stream: ``vigie:events:<name>`` read through consumer groups.

* Publish: one ``XADD ... MAXLEN ~ <bound>`` per event (field ``event``: its JSON), the
  batch in one ``MULTI``/``EXEC`` (all or nothing). A retry after a lost ``EXEC`` answer
  may store it twice: the ids are deterministic and consumers drop the copy.
* Consume: the group is created at id 0 with ``MKSTREAM`` (``BUSYGROUP``: already there).
  A poll first takes, with ``XAUTOCLAIM``, entries of the group left pending longer than
  ``claim_min_idle_ms`` (a consumer that died before acking), then new ones with
  ``XREADGROUP >``. The caller acks (``XACK``) after its own commit.
* Poison entries go to ``vigie:events:<name>:quarantine`` (fields ``id``, ``reason``,
  ``raw``, ``group``, ``consumer``, ``quarantined_at``) and are acked in the same
  transaction.
* A Redis restart: a poll or ack while it is down raises VigieError(UNAVAILABLE) naming
  the stream; the next one after it is back reconnects, and recreates the group if the
  server lost it (``NOGROUP``; the group then starts again at id 0: at least once).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import redis

from vigie.errors import ErrorCode, VigieError
from vigie.events.flight_events import Event, PoisonEvent, decode, encode
from vigie.events.payload_stream import SOCKET_TIMEOUT_S, connect
from vigie.events.stream import Delivery, QuarantinedEntry, check_name, utc_now

#: Approximate bound on the stream's length (older entries are trimmed).
DEFAULT_MAXLEN = 1_000_000

#: Approximate bound on the quarantine stream's length.
DEFAULT_QUARANTINE_MAXLEN = 100_000

#: How long an entry stays pending with a consumer before another may claim it.
DEFAULT_CLAIM_MIN_IDLE_MS = 60_000

#: Longest a poll blocks: below the socket timeout, so a quiet stream is not an error.
MAX_BLOCK_MS = int((SOCKET_TIMEOUT_S - 1.0) * 1000)

_FIELD = b"event"
_COUNT_PAGE = 10_000
T = TypeVar("T")


def stream_key(name: str) -> str:
    """The Redis key of the event stream ``name``."""
    return f"vigie:events:{name}"


class RedisEventStream:
    """The event stream ``name`` on the Redis server at ``url``.

    Args:
        url: ``redis://``, ``rediss://`` or ``unix://`` URL.
        name: The stream's name (key ``vigie:events:<name>``).
        maxlen: Approximate bound on the stream's length (``MAXLEN ~``).
        claim_min_idle_ms: Pending time after which a consumer's entries may be claimed.
        quarantine_maxlen: Approximate bound on the quarantine stream's length.
    """

    def __init__(
        self,
        url: str,
        *,
        name: str = "flights",
        maxlen: int = DEFAULT_MAXLEN,
        claim_min_idle_ms: int = DEFAULT_CLAIM_MIN_IDLE_MS,
        quarantine_maxlen: int = DEFAULT_QUARANTINE_MAXLEN,
    ) -> None:
        self.name = check_name(name, "stream")
        self.key = stream_key(name)
        self.quarantine_key = f"{self.key}:quarantine"
        self.maxlen = maxlen
        self.claim_min_idle_ms = claim_min_idle_ms
        self.quarantine_maxlen = quarantine_maxlen
        self.url = url
        self._client = connect(url)

    def publish(self, events: Sequence[Event]) -> None:
        """XADD the events, in order, in one transaction.

        Raises:
            VigieError: UNAVAILABLE when Redis is unreachable or refuses.
        """
        if not events:
            return
        payloads = [encode(event) for event in events]

        def send() -> None:
            with self._client.pipeline(transaction=True) as pipe:
                for payload in payloads:
                    pipe.xadd(self.key, {_FIELD: payload}, maxlen=self.maxlen, approximate=True)
                pipe.execute()

        _unavailable(self.key, "publish to", send)

    def consumer(self, group: str, name: str) -> RedisEventConsumer:
        """The consumer ``name`` of ``group``, on its own connection."""
        return RedisEventConsumer(self, group=group, name=name)

    def read_quarantine(self, *, limit: int = 1000) -> list[QuarantinedEntry]:
        """Up to ``limit`` quarantined entries, oldest first.

        Raises:
            VigieError: UNAVAILABLE when Redis is unreachable.
        """
        rows: Any = _unavailable(
            self.quarantine_key,
            "read",
            lambda: self._client.xrange(self.quarantine_key, count=limit),
        )
        return [_quarantined(fields) for _, fields in rows or []]

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()


class RedisEventConsumer:
    """One consumer of a group of a Redis event stream (any number per group).

    Args:
        stream: The stream it reads.
        group: The consumer group.
        name: This consumer's name in the group.
    """

    def __init__(self, stream: RedisEventStream, *, group: str, name: str) -> None:
        self.stream = stream.name
        self.group = check_name(group, "group")
        self.name = check_name(name, "consumer")
        self.quarantined = 0
        self._key = stream.key
        self._quarantine_key = stream.quarantine_key
        self._quarantine_maxlen = stream.quarantine_maxlen
        self._min_idle_ms = stream.claim_min_idle_ms
        self._client = connect(stream.url)
        self._group_ready = False
        self._claim_cursor = "0-0"

    def poll(self, max_events: int, block_ms: int = 0) -> list[Delivery]:
        """Claimed entries left pending by others, then new ones; up to ``max_events``.

        Blocks at most ``block_ms`` (capped at :data:`MAX_BLOCK_MS`) when nothing is there.

        Raises:
            VigieError: UNAVAILABLE, naming the stream, when Redis is unreachable.
        """
        return self._call("poll", lambda: self._poll(max_events, block_ms))

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        """XACK the deliveries: the group never gets them again.

        Raises:
            VigieError: UNAVAILABLE, naming the stream, when Redis is unreachable.
        """
        ids = [delivery.id for delivery in deliveries]
        if ids:
            self._call("ack", lambda: self._client.xack(self._key, self.group, *ids))

    def lag(self) -> int:
        """Entries not yet delivered to the group (XINFO GROUPS ``lag``, or counted when
        Redis cannot tell) plus the group's pending ones.

        Raises:
            VigieError: UNAVAILABLE, naming the stream, when Redis is unreachable.
        """
        return self._call("read the lag of", self._lag)

    def close(self) -> None:
        """Close the connection pool; unacked entries stay pending for others to claim."""
        self._client.close()

    def _call(self, action: str, operation: Callable[[], T]) -> T:
        """Run ``operation``, creating the group first or again when Redis lacks it."""
        try:
            if not self._group_ready:
                _unavailable(self._key, action, self._create_group)
            return _unavailable(self._key, action, operation)
        except VigieError as err:
            if not isinstance(err.__cause__, redis.ResponseError):
                raise
            if not str(err.__cause__).startswith("NOGROUP"):
                raise
        self._group_ready = False  # the server lost the group (a restart without its data)
        _unavailable(self._key, action, self._create_group)
        return _unavailable(self._key, action, operation)

    def _create_group(self) -> None:
        try:
            self._client.xgroup_create(self._key, self.group, id="0", mkstream=True)
        except redis.ResponseError as err:
            if not str(err).startswith("BUSYGROUP"):
                raise
        self._group_ready = True

    def _poll(self, max_events: int, block_ms: int) -> list[Delivery]:
        rows = self._claim(max_events)
        wanted = max_events - len(rows)
        if wanted > 0:
            block = min(block_ms, MAX_BLOCK_MS) if block_ms > 0 and not rows else None
            reply: Any = self._client.xreadgroup(
                self.group, self.name, {self._key: ">"}, count=wanted, block=block
            )
            for _, entries in reply or []:
                rows.extend(entries)
        return self._deliveries(rows)

    def _claim(self, max_events: int) -> list[tuple[Any, Any]]:
        """Entries of the group pending longer than the claim timeout, now this consumer's."""
        reply = self._client.xautoclaim(
            self._key,
            self.group,
            self.name,
            self._min_idle_ms,
            start_id=self._claim_cursor,
            count=max_events,
        )
        self._claim_cursor = _text(reply[0])
        # Redis 6.2 answers a claimed entry that was trimmed since with no fields.
        return [(entry_id, fields) for entry_id, fields in reply[1] if fields is not None]

    def _deliveries(self, rows: list[tuple[Any, Any]]) -> list[Delivery]:
        deliveries: list[Delivery] = []
        poison: list[tuple[str, bytes, str]] = []
        for entry_id, fields in rows:
            raw = fields.get(_FIELD)
            try:
                if raw is None:
                    raise PoisonEvent(f"no {_FIELD.decode()!r} field")
                deliveries.append(Delivery(_text(entry_id), decode(raw)))
            except PoisonEvent as err:
                poison.append((_text(entry_id), raw or b"", err.reason))
        if poison:
            self._quarantine(poison)
        return deliveries

    def _quarantine(self, poison: list[tuple[str, bytes, str]]) -> None:
        with self._client.pipeline(transaction=True) as pipe:
            for entry_id, raw, reason in poison:
                record = {
                    "id": entry_id,
                    "reason": reason,
                    "raw": raw,
                    "group": self.group,
                    "consumer": self.name,
                    "quarantined_at": utc_now(),
                }
                pipe.xadd(
                    self._quarantine_key,
                    record,  # type: ignore[arg-type]
                    maxlen=self._quarantine_maxlen,
                    approximate=True,
                )
            pipe.xack(self._key, self.group, *(entry_id for entry_id, _, _ in poison))
            pipe.execute()
        self.quarantined += len(poison)

    def _lag(self) -> int:
        try:
            groups = self._client.xinfo_groups(self._key)
        except redis.ResponseError as err:
            if "no such key" in str(err).lower():
                return 0
            raise
        info = next((g for g in groups if _text(g["name"]) == self.group), None)
        if info is None:
            return int(self._client.xlen(self._key))
        lag = info.get("lag")
        if lag is None:
            lag = self._count_after(_text(info["last-delivered-id"]))
        return int(lag) + int(info["pending"])

    def _count_after(self, last_delivered: str) -> int:
        """Entries after ``last_delivered``, when XINFO cannot tell (Redis before 7, or
        after deletions): XLEN when nothing was delivered, else counted page by page."""
        if last_delivered == "0-0":
            return int(self._client.xlen(self._key))
        count, start = 0, f"({last_delivered}"
        while page := self._client.xrange(self._key, min=start, count=_COUNT_PAGE):
            count += len(page)
            start = f"({_text(page[-1][0])}"
        return count


def _unavailable(key: str, action: str, operation: Callable[[], T]) -> T:
    """``operation()``, its Redis errors raised as VigieError(UNAVAILABLE) naming ``key``."""
    try:
        return operation()
    except redis.RedisError as err:
        raise VigieError(
            ErrorCode.UNAVAILABLE,
            f"cannot {action} the Redis event stream {key!r}: {err}",
            stream=key,
        ) from err


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _quarantined(fields: dict[bytes, bytes]) -> QuarantinedEntry:
    def field(name: str) -> str:
        return _text(fields.get(name.encode(), b""))

    return QuarantinedEntry(
        id=field("id"),
        reason=field("reason"),
        raw=fields.get(b"raw", b""),
        group=field("group"),
        consumer=field("consumer"),
        quarantined_at=field("quarantined_at"),
    )
