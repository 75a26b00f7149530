"""The online feature store on Redis (``VIGIE_FEATURES_URL=redis://...``).

Layout, under one key prefix, so a lookup is one pipelined round trip whatever it asks:

* ``o:<origin>:sched``, ``o:<origin>:dep``, ``o:<origin>:arr`` and ``d:<dest>:arr``: sorted
  sets of one member per flight event, scored by the event's instant (scheduled
  departure, actual departure, actual arrival), the member carrying the facts the event
  told (``key|carrier|origin|dest|sched|value``, and ``|tail|distance|flight number`` for a
  schedule);
* ``o:<origin>:cancel``: cancelled flights, scored by their scheduled departure;
* ``w:<origin>``: one member per observed hour, scored by the hour;
* ``planes`` and ``routes``: hashes of the aircraft by pseudonymised tail number and of
  the distance by ``origin|dest``; ``watermark``: the newest instant applied (``ZADD GT``).

An event applied twice adds the same member with the same score: nothing changes, so the
processor can be at-least-once and take events in any order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from vigie.events.flight_events import (
    Event,
    FlightArrived,
    FlightCancelled,
    FlightDeparted,
    FlightScheduled,
    WeatherObserved,
)
from vigie.features.store import (
    LOOKBACK_US,
    WEATHER,
    Found,
    Lookup,
    Plane,
    PlanKey,
    facts_from_rows,
    us,
)

CONNECT_TIMEOUT_S = 2.0
SOCKET_TIMEOUT_S = 2.0
_WATERMARK_MEMBER = "w"


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _member(event: Event, value: object = None) -> str:
    assert not isinstance(event, WeatherObserved)
    scheduled = event if isinstance(event, FlightScheduled) else None
    extra = (scheduled.tailnum, scheduled.distance, scheduled.flight_number) if scheduled else ()
    parts = (event.flight_key, event.carrier, event.origin, event.dest, us(event.sched_dep))
    return "|".join(map(_text, (*parts, value, *extra)))


class RedisStore:
    """The online store in Redis.

    Args:
        url: ``redis://`` URL.
        prefix: Key prefix (tests use their own).
    """

    def __init__(self, url: str, *, prefix: str = "vigie:features:") -> None:
        self._client = redis.Redis.from_url(
            url, socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=SOCKET_TIMEOUT_S
        )
        self._p = prefix

    def apply(self, events: Sequence[Event]) -> None:
        """Add every event's member (one transaction) and raise the watermark."""
        p = self._p
        with self._client.pipeline(transaction=True) as pipe:
            for event in events:
                if isinstance(event, WeatherObserved):
                    values = [getattr(event, name) for name in WEATHER]
                    hour = us(event.hour)
                    pipe.zremrangebyscore(f"{p}w:{event.origin}", hour, hour)
                    pipe.zadd(f"{p}w:{event.origin}", {json.dumps([hour, *values]): hour})
                elif isinstance(event, FlightScheduled):
                    pipe.zadd(f"{p}o:{event.origin}:sched", {_member(event): us(event.sched_dep)})
                    if event.distance is not None:
                        pipe.hsetnx(f"{p}routes", f"{event.origin}|{event.dest}", event.distance)
                elif isinstance(event, FlightDeparted):
                    at = us(event.occurred_at)
                    pipe.zadd(f"{p}o:{event.origin}:dep", {_member(event, event.dep_delay_min): at})
                elif isinstance(event, FlightArrived):
                    at, member = us(event.occurred_at), _member(event, event.arr_delay_min)
                    pipe.zadd(f"{p}o:{event.origin}:arr", {member: at})
                    pipe.zadd(f"{p}d:{event.dest}:arr", {member: at})
                elif isinstance(event, FlightCancelled):
                    pipe.zadd(f"{p}o:{event.origin}:cancel", {_member(event): us(event.sched_dep)})
            if events:
                newest = max(us(e.occurred_at) for e in events)
                pipe.zadd(f"{p}watermark", {_WATERMARK_MEMBER: newest}, gt=True)
            pipe.execute()

    def put_reference(
        self, planes: Iterable[Plane], routes: Iterable[tuple[str, str, float]]
    ) -> None:
        """Write the aircraft and route distances."""
        plane_map = {
            p.tail: json.dumps([p.plane_year, p.manufacturer, p.seats, p.engine]) for p in planes
        }
        route_map = {f"{o}|{d}": distance for o, d, distance in routes}
        with self._client.pipeline(transaction=True) as pipe:
            if plane_map:
                pipe.hset(f"{self._p}planes", mapping=plane_map)  # type: ignore[arg-type]
            if route_map:
                pipe.hset(f"{self._p}routes", mapping=route_map)  # type: ignore[arg-type]
            pipe.execute()

    def lookup(self, query: Lookup) -> Found:
        """Everything ``query`` needs, in one pipelined round trip."""
        p, lo, hi = self._p, query.first_us - LOOKBACK_US, query.last_us
        asked = _Asked.of(query)
        pipe = self._client.pipeline(transaction=False)
        for origin, sched in asked.plans:  # a request's own schedule: aircraft, distance
            pipe.zrangebyscore(f"{p}o:{origin}:sched", sched, sched)
        for origin in asked.origins:
            pipe.zrangebyscore(f"{p}o:{origin}:sched", lo, hi)  # hi inclusive: own schedule
            pipe.zrangebyscore(f"{p}o:{origin}:cancel", lo, hi)
            pipe.zrangebyscore(f"{p}o:{origin}:dep", lo, f"({hi}", withscores=True)
            pipe.zrangebyscore(f"{p}o:{origin}:arr", lo, f"({hi}", withscores=True)
        for dest in asked.dests:
            pipe.zrangebyscore(f"{p}d:{dest}:arr", lo, f"({hi}", withscores=True)
        for origin, hour in asked.weather:
            pipe.zrangebyscore(f"{p}w:{origin}", hour, hour)
        pipe.hmget(f"{p}planes", asked.tails or ["-"])
        pipe.hmget(f"{p}routes", [f"{o}|{d}" for o, d in asked.routes] or ["-"])
        pipe.zscore(f"{p}watermark", _WATERMARK_MEMBER)
        found = asked.read(iter(pipe.execute()), query)
        self._planes_of_schedules(found, set(asked.tails))
        return found

    def _planes_of_schedules(self, found: Found, asked: set[str]) -> None:
        """A second round trip for the aircraft the schedules named and nobody asked for."""
        more = sorted({t for t, _ in found.schedules.values() if t and t not in asked})
        if more:
            for tail, raw in zip(more, self._client.hmget(f"{self._p}planes", more), strict=True):
                if raw is not None:
                    found.planes[tail] = tuple(json.loads(raw))

    def watermark_us(self) -> int | None:
        """The newest event instant applied."""
        score = self._client.zscore(f"{self._p}watermark", _WATERMARK_MEMBER)
        return None if score is None else int(score)

    def prune(self, before_us: int) -> int:
        """Drop members scored before ``before_us`` from every sorted set of the prefix."""
        removed = 0
        for key in self._client.scan_iter(match=f"{self._p}*", count=1000):
            name = key.decode() if isinstance(key, bytes) else str(key)
            if name.endswith(("sched", "cancel", "dep", "arr")) or f"{self._p}w:" in name:
                removed += int(self._client.zremrangebyscore(name, "-inf", f"({before_us}"))
        return removed

    def clear(self, *, keep_reference: bool = False) -> None:
        """Delete every key of the prefix (the aircraft and routes too, unless kept)."""
        kept = {f"{self._p}planes", f"{self._p}routes"} if keep_reference else set()
        keys = [
            k
            for k in self._client.scan_iter(match=f"{self._p}*", count=1000)
            if (k.decode() if isinstance(k, bytes) else str(k)) not in kept
        ]
        if keys:
            self._client.delete(*keys)

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()


@dataclass(frozen=True)
class _Asked:
    """A lookup's questions in the order they are pipelined, and how to read the replies."""

    plans: list[tuple[str, int]]
    origins: list[str]
    dests: list[str]
    weather: list[tuple[str, int]]
    tails: list[str]
    routes: list[tuple[str, str]]

    @classmethod
    def of(cls, query: Lookup) -> _Asked:
        return cls(
            # the origins asked for their windows return every schedule of the range
            plans=sorted({(k[1], k[3]) for k in query.schedules if k[1] not in query.origins}),
            origins=sorted(query.origins),
            dests=sorted(query.dests),
            weather=sorted(query.weather),
            tails=sorted(query.tails),
            routes=sorted(query.routes),
        )

    def read(self, replies: Iterator[Any], query: Lookup) -> Found:
        """The :class:`Found` of the replies, in the order they were asked."""
        found, flights = Found(), _Flights()
        for _ in self.plans:
            flights.planned(next(replies))
        for _ in self.origins:
            flights.scheduled(next(replies))
            flights.cancelled(next(replies))
            flights.departed(next(replies))
            flights.arrived(next(replies))
        for _ in self.dests:
            flights.arrived(next(replies))
        found.facts = facts_from_rows(flights.rows())
        for key in self.weather:
            members = next(replies)
            if members:
                found.weather[key] = tuple(json.loads(members[0])[1:])
        for tail, raw in zip(self.tails, next(replies), strict=False):
            if raw is not None:
                found.planes[tail] = tuple(json.loads(raw))
        for pair, raw in zip(self.routes, next(replies), strict=False):
            if raw is not None:
                found.routes[pair] = float(raw)
        score = next(replies)
        found.watermark_us = None if score is None else int(score)
        found.schedules = flights.schedules(query.schedules)
        return found


class _Flights:
    """Members of the sorted sets merged into one fact row per flight."""

    def __init__(self) -> None:
        self._rows: dict[int, list[Any]] = {}
        self._plans: dict[PlanKey, tuple[int, str | None, float | None]] = {}

    def _row(self, member: bytes | str) -> tuple[list[Any], list[str]]:
        parts = (member.decode() if isinstance(member, bytes) else member).split("|")
        key = int(parts[0])
        row = self._rows.get(key)
        if row is None:
            # key, origin, dest, carrier, sched, dep, dep delay, arr, arr delay, cancelled
            row = [key, parts[2], parts[3], parts[1], int(parts[4]), None, None, None, None, 0]
            self._rows[key] = row
        return row, parts

    def scheduled(self, members: list[bytes]) -> None:
        self.planned(members)
        for member in members:
            self._row(member)

    def planned(self, members: list[bytes]) -> None:
        """Schedules, by (carrier, origin, dest, sched, flight number or -1)."""
        for member in members:
            parts = (member.decode() if isinstance(member, bytes) else member).split("|")
            key, number = int(parts[0]), int(parts[8]) if len(parts) > 8 and parts[8] else -1
            plan = (key, parts[6] or None, float(parts[7]) if parts[7] else None)
            head = (parts[1], parts[2], parts[3], int(parts[4]))
            for name in ((*head, -1), (*head, number)):
                if name not in self._plans or plan[0] < self._plans[name][0]:
                    self._plans[name] = plan

    def cancelled(self, members: list[bytes]) -> None:
        for member in members:
            self._row(member)[0][9] = 1

    def departed(self, pairs: list[tuple[bytes, float]]) -> None:
        for member, score in pairs:
            row, parts = self._row(member)
            row[5], row[6] = int(score), float(parts[5])

    def arrived(self, pairs: list[tuple[bytes, float]]) -> None:
        for member, score in pairs:
            row, parts = self._row(member)
            row[7], row[8] = int(score), float(parts[5])

    def rows(self) -> list[list[Any]]:
        return list(self._rows.values())

    def schedules(self, keys: frozenset[PlanKey]) -> dict[PlanKey, tuple[str | None, float | None]]:
        return {k: self._plans[k][1:] for k in keys if k in self._plans}
