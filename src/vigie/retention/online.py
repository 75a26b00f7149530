"""Erasure in the online feature store: the aircraft's entry, and its tail on its flights.

The store keeps aircraft by pseudonymised tail number and, on each scheduled flight, the
tail that flies it (:mod:`vigie.features.store`, :mod:`vigie.features.redis_store`). Erasure
deletes the aircraft's entry and clears the tail of its flights, which stay: their
schedule and delays feed the features of other flights. Nothing in the store is about a
client, and it holds nothing old (the feature processor prunes it), so retention does not
sweep it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import urlparse

import redis

from vigie.config import Settings
from vigie.errors import ErrorCode, VigieError
from vigie.features.redis_store import CONNECT_TIMEOUT_S, SOCKET_TIMEOUT_S
from vigie.governance.erasure import ErasureReport, SubjectKind, Target

#: Key prefix of the Redis store (:class:`vigie.features.redis_store.RedisStore`'s default).
REDIS_PREFIX = "vigie:features:"

#: Position of the tail in a schedule member ``key|carrier|origin|dest|sched||tail|...``.
_TAIL_FIELD = 6


def sqlite_path(settings: Settings) -> Path:
    """The embedded store's file (:func:`vigie.features.processor.open_store`)."""
    return settings.home / "features" / "online.sqlite"


def erase_online(settings: Settings, target: Target, report: ErasureReport) -> None:
    """Take an aircraft out of the configured online store.

    Raises:
        VigieError: CONFIGURATION for an unsupported ``VIGIE_FEATURES_URL``; UNAVAILABLE when
            the store cannot be reached.
    """
    if target.kind is not SubjectKind.TAILNUM:
        report.add("online_store", "deleted", 0)
        return
    url = settings.features_url
    if url is None:
        planes, flights = _erase_sqlite(sqlite_path(settings), target.pseudonym, report.dry_run)
    elif urlparse(url).scheme in {"redis", "rediss", "unix"}:
        planes, flights = _erase_redis(url, target.pseudonym, report.dry_run)
    else:
        raise VigieError(
            ErrorCode.CONFIGURATION,
            f"VIGIE_FEATURES_URL {url!r} is not supported: use redis://... or leave it unset",
            field="features_url",
        )
    report.add("online_store", "deleted", planes)
    report.add("online_store", "unlinked", flights)


def _erase_sqlite(path: Path, tail: str, dry_run: bool) -> tuple[int, int]:
    if not path.is_file():
        return 0, 0
    db = sqlite3.connect(path, timeout=30.0)
    try:
        # erased values are overwritten in the file, not only unlinked from its pages
        db.execute("PRAGMA secure_delete = ON")
        with db:
            planes = db.execute("SELECT count(*) FROM planes WHERE tail = ?", (tail,)).fetchone()
            flights = db.execute("SELECT count(*) FROM flights WHERE tail = ?", (tail,)).fetchone()
            if not dry_run:
                db.execute("DELETE FROM planes WHERE tail = ?", (tail,))
                db.execute("UPDATE flights SET tail = NULL WHERE tail = ?", (tail,))
        if not dry_run:  # the old pages leave the write-ahead log for the database file
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error as err:
        raise VigieError(
            ErrorCode.UNAVAILABLE, f"cannot erase from the online store {path}: {err}"
        ) from err
    finally:
        db.close()
    return int(planes[0]), int(flights[0])


def _erase_redis(url: str, tail: str, dry_run: bool) -> tuple[int, int]:
    client = redis.Redis.from_url(
        url, socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=SOCKET_TIMEOUT_S
    )
    try:
        planes = int(client.hexists(f"{REDIS_PREFIX}planes", tail))
        if planes and not dry_run:
            client.hdel(f"{REDIS_PREFIX}planes", tail)
        flights = sum(
            _unlink_schedules(client, key, tail, dry_run)
            for key in client.scan_iter(match=f"{REDIS_PREFIX}o:*:sched", count=1000)
        )
    except redis.RedisError as err:
        raise VigieError(
            ErrorCode.UNAVAILABLE, f"cannot erase from the online store: {err}"
        ) from err
    finally:
        client.close()
    return planes, flights


def _unlink_schedules(client: redis.Redis, key: bytes | str, tail: str, dry_run: bool) -> int:
    """Replace each schedule member of ``key`` naming ``tail`` by one without it (same score)."""
    found = []
    for member, score in client.zscan_iter(key, match=f"*|{tail}|*", count=1000):
        text = member.decode() if isinstance(member, bytes) else str(member)
        parts = text.split("|")
        if len(parts) > _TAIL_FIELD and parts[_TAIL_FIELD] == tail:
            parts[_TAIL_FIELD] = ""
            found.append((text, "|".join(parts), score))
    if found and not dry_run:
        with client.pipeline(transaction=True) as pipe:
            for old, new, score in found:
                pipe.zrem(key, old)
                pipe.zadd(key, {new: score})
            pipe.execute()
    return len(found)
